"""Every sentence and label of the `sizing quote` report, in English and Korean, in one place.

``STRINGS[key] = (English, Korean)``; ``{name}`` fields are filled by ``sizing.quote.writers`` after it formats
each value for the language and currency. tests/test_quote.py checks that both languages have the same fields.
"""
from __future__ import annotations

import re
import string

LANGS = ("en", "ko")

STRINGS = {
    # header and summary
    "title": ("Hardware quote: {model}", "하드웨어 견적: {model}"),
    "model": ("Model", "모델"),
    "date": ("Date", "작성일"),
    "task": ("Task", "작업"),
    "task_train_samples": ("train on {samples} samples x {epochs} epoch(s) within {deadline}",
                           "샘플 {samples}개 x {epochs} 에폭 학습, 기한 {deadline}"),
    "task_train_tokens": ("train on {tokens} tokens x {epochs} epoch(s) within {deadline}",
                          "토큰 {tokens}개 x {epochs} 에폭 학습, 기한 {deadline}"),
    "task_finetune_full": ("full fine-tuning", "전체 파인튜닝"),
    "task_finetune": ("{method} rank {rank} on {targets}: {trained} of {params} params trained",
                      "{method} 랭크 {rank}, 대상 {targets}: 파라미터 {params}개 중 {trained}개 학습"),
    "task_serve": ("serve request batches of {batch}", "요청 배치 {batch} 서빙"),
    "task_llm": ("serve {concurrency} concurrent requests of {prompt} prompt + {output} output tokens",
                 "프롬프트 {prompt} + 출력 {output} 토큰 요청 {concurrency}개 동시 서빙"),
    "task_llm_qps": ("serve {qps} requests/s of {prompt} prompt + {output} output tokens",
                     "프롬프트 {prompt} + 출력 {output} 토큰 요청을 초당 {qps}개 서빙"),
    "task_ttft": ("time to first token at most {ttft}", "첫 토큰까지 최대 {ttft}"),
    "task_tpot": ("time per output token at most {tpot}", "출력 토큰당 최대 {tpot}"),
    "task_qps": ("{qps} samples/s in all", "전체 초당 {qps} 샘플"),
    "task_latency": ("at most {latency} per request batch", "요청 배치당 최대 {latency}"),
    "settings": ("Settings", "설정"),
    "settings_text_training": ("global batch {batch}, {dtype} storage, {precision} compute, optimizer {optimizer}",
                               "전체 배치 {batch}, 저장 {dtype}, 연산 {precision}, 옵티마이저 {optimizer}"),
    "settings_text_inference": ("batch {batch} per request, {dtype} storage, {precision} compute",
                                "요청당 배치 {batch}, 저장 {dtype}, 연산 {precision}"),
    "currency": ("Currency", "통화"),
    "h_summary": ("Summary", "요약"),
    "pick": ("Recommended", "추천 구성"),
    "pick_text": ("{count} x {device} ({nodes} node(s) of {per_node})", "{device} {count}대 ({per_node}대 노드 {nodes}개)"),
    "no_pick": ("No option meets the target within the budget: see the findings below.",
                "예산 안에서 목표를 충족하는 구성이 없습니다. 아래 검토 결과를 보십시오."),
    "total_price": ("Total price (purchase)", "총 구매가"),
    "time_train": ("Time to train", "학습 시간"),
    "latency": ("Latency per request batch", "요청 배치당 지연 시간"),
    "throughput": ("Throughput", "처리량"),
    "throughput_text": ("{qps} samples/s", "초당 {qps} 샘플"),
    "throughput_llm_text": ("{tokens} output tokens/s, {rps} requests/s", "초당 출력 토큰 {tokens}개, 초당 요청 {rps}개"),
    "tpot": ("Time per output token", "출력 토큰당 시간"),
    "ttft": ("Time to first token", "첫 토큰까지 시간"),
    "settings_text_llm": ("weights {weights}, KV cache {kv}, matmuls {precision}",
                          "가중치 {weights}, KV 캐시 {kv}, 행렬곱 {precision}"),
    "power": ("Power (facility, at TDP)", "전력 (시설 기준, TDP)"),
    "tco_over": ("Total cost of ownership over {horizon}", "{horizon} 총소유비용"),
    "cloud_alt": ("Cloud rental instead", "클라우드 임대 시"),
    "h_findings": ("Findings", "검토 결과"),
    # line items
    "h_items": ("Line items", "구매 품목"),
    "col_item": ("Item", "품목"),
    "col_unit": ("Unit price", "단가"),
    "col_qty": ("Quantity", "수량"),
    "col_total": ("Total", "금액"),
    "col_kind": ("Price kind", "가격 종류"),
    "col_date": ("Price date", "가격 기준일"),
    "col_source": ("Source", "출처"),
    "total_row": ("Total", "합계"),
    "item_devices": ("{name}", "{name}"),
    "item_server": ("Server for {name} device(s) (chassis, host CPUs, memory, network), devices not included",
                    "장치 {name}개용 서버 (섀시, 호스트 CPU, 메모리, 네트워크; 장치 제외)"),
    "item_node": ("{name} server, devices included", "{name} 서버 (장치 포함)"),
    "item_nic": ("Network adapters, {name} Gb/s (ConnectX-7 class), for the cluster network",
                 "클러스터 네트워크용 {name} Gb/s 네트워크 어댑터 (ConnectX-7급)"),
    "item_switch": ("Network switch, {name} ports of 400 Gb/s", "네트워크 스위치 (400 Gb/s 포트 {name}개)"),
    "item_switch_leaf": ("Leaf switches, {name} ports of 400 Gb/s (fat tree)",
                         "리프 스위치 (400 Gb/s 포트 {name}개, 팻 트리)"),
    "item_switch_spine": ("Spine switches, {name} ports of 400 Gb/s (fat tree)",
                          "스파인 스위치 (400 Gb/s 포트 {name}개, 팻 트리)"),
    "item_switch_aggregation": ("Aggregation switches, {name} ports of 400 Gb/s (fat tree)",
                                "집선 스위치 (400 Gb/s 포트 {name}개, 팻 트리)"),
    "item_switch_core": ("Core switches, {name} ports of 400 Gb/s (fat tree)",
                         "코어 스위치 (400 Gb/s 포트 {name}개, 팻 트리)"),
    "item_optics": ("Optical transceivers, {name} Gb/s (two per link)", "{name} Gb/s 광 트랜시버 (링크당 2개)"),
    "item_storage": ("Shared storage, TB (data set and {name} checkpoints)",
                     "공유 스토리지, TB 단위 (데이터셋과 체크포인트 {name}개)"),
    "item_rack": ("Racks ({name} kW each)", "랙 (랙당 {name} kW)"),
    "item_installation": ("Installation and integration ({name} of the hardware)", "설치 및 통합 (하드웨어의 {name})"),
    "item_support": ("Support and maintenance, years ({name} of the hardware a year after the first)",
                     "지원 및 유지보수, 연 단위 (첫해 이후 매년 하드웨어의 {name})"),
    "item_tax": ("Tax / VAT ({name} of the lines above)", "세금/부가가치세 (위 항목의 {name})"),
    "kind_list": ("list", "정가"),
    "kind_msrp": ("MSRP", "권장 소비자가"),
    "kind_street": ("street", "시장가"),
    "kind_estimate": ("estimate", "추정가"),
    "kind_quote": ("quote", "견적가"),
    "kind_given": ("as given", "입력값"),
    # TCO
    "h_tco": ("Cost of ownership", "소유 비용"),
    "tco_purchase": ("Purchase", "구매"),
    "tco_energy": ("Electricity over {horizon}: {kw} kW x {hours} h = {kwh} kWh at {price}/kWh",
                   "{horizon} 전기료: {kw} kW x {hours}시간 = {kwh} kWh, kWh당 {price}"),
    "tco_total": ("Total cost of ownership over {horizon}", "{horizon} 총소유비용"),
    "job_energy": ("Electricity for this job alone: {kwh} kWh", "이 작업만의 전기료: {kwh} kWh"),
    "cloud_job": ("Renting the same devices for this job: {hours} device-hours at {rate}/device-hour ({provider}, "
                  "{offer}, {date})",
                  "같은 장치를 이 작업 동안 임대: {hours} 장치-시간 x 장치-시간당 {rate} ({provider}, {offer}, {date})"),
    "cloud_serve": ("Renting the same devices for {horizon}: {hours} device-hours at {rate}/device-hour ({provider}, "
                    "{offer}, {date})",
                    "같은 장치를 {horizon} 동안 임대: {hours} 장치-시간 x 장치-시간당 {rate} ({provider}, {offer}, {date})"),
    "breakeven": ("Owning costs as much as renting for {jobs} such jobs; {fit} of them fit in {horizon}.",
                  "소유 비용은 이런 작업 {jobs}회를 임대하는 비용과 같습니다. {horizon} 동안 {fit}회를 할 수 있습니다."),
    "no_cloud": ("The database has no cloud rate for {device}.", "데이터베이스에 {device}의 클라우드 요금이 없습니다."),
    "no_energy": ("The database has no TDP for {device}: electricity is not counted.",
                  "데이터베이스에 {device}의 TDP가 없어 전기료를 계산하지 않았습니다."),
    # why this many
    "h_why": ("Why this many", "이 수량의 근거"),
    "why_flops": ("Model FLOPs per step (forward and backward, global batch {batch}) {per_step}FLOPs x {steps} steps "
                  "= {total}FLOPs",
                  "스텝당 모델 FLOPs (순전파와 역전파, 전체 배치 {batch}) {per_step}FLOPs x {steps} 스텝 = {total}FLOPs"),
    "why_effective": ("{count} device(s) x {peak}FLOP/s peak ({precision}) x {util} utilization = {effective}FLOP/s "
                      "effective",
                      "장치 {count}대 x 최대 {peak}FLOP/s ({precision}) x 활용률 {util} = 실효 {effective}FLOP/s"),
    "why_time": ("{total}FLOPs / {effective}FLOP/s = {time}", "{total}FLOPs / {effective}FLOP/s = {time}"),
    "why_memory": ("Memory per device: {memory} of {capacity} (tensor parallel {tp}, ZeRO-{zero}, {replicas} "
                   "replica(s)); bound: {bound}",
                   "장치당 메모리: {capacity} 중 {memory} (텐서 병렬 {tp}, ZeRO-{zero}, 복제 {replicas}개); 병목: {bound}"),
    "why_fewer": ("The next smaller purchase ({count} device(s)) would take {time}, past the deadline {deadline}.",
                  "한 단계 적은 구성({count}대)은 {time}이(가) 걸려 기한 {deadline}을(를) 넘깁니다."),
    "why_least": ("This is the fewest devices the model fits on.", "모델이 들어가는 가장 적은 장치 수입니다."),
    "why_serve_flops": ("FLOPs per request batch of {batch}: {flops}", "요청 배치 {batch}당 FLOPs: {flops}"),
    "why_serve_latency": ("On {tp} device(s) at {util} utilization a request batch takes {latency}",
                          "장치 {tp}대, 활용률 {util}에서 요청 배치 하나에 {latency}"),
    "why_llm_layout": ("{replicas} replica(s) of tensor parallel {tp} x pipeline {pp}: {count} devices in {nodes} "
                       "node(s)", "텐서 병렬 {tp} x 파이프라인 {pp} 복제 {replicas}개: 노드 {nodes}개에 장치 {count}대"),
    "why_llm_latency": ("{concurrency} sequence(s) per replica: time to first token {ttft}, time per output token "
                        "{tpot} ({tokens} output tokens/s in all)",
                        "복제당 시퀀스 {concurrency}개: 첫 토큰 {ttft}, 출력 토큰당 {tpot} (전체 초당 출력 토큰 {tokens}개)"),
    "why_llm_memory": ("Memory per device: weights {weights} + KV cache {kv} of {capacity}; up to {max} sequences of "
                       "this length fit; decode is {bound} bound",
                       "장치당 메모리: {capacity} 중 가중치 {weights} + KV 캐시 {kv}; 이 길이의 시퀀스 최대 {max}개; "
                       "디코드 병목: {bound}"),
    "why_serve_replicas": ("{replicas} replica(s) of {tp} device(s) serve {qps} samples/s: {count} devices in "
                           "{nodes} node(s)",
                           "장치 {tp}대짜리 복제 {replicas}개가 초당 {qps} 샘플 처리: 노드 {nodes}개에 장치 {count}대"),
    "host_memory": ("host memory", "호스트 메모리"),
    "bound_compute": ("compute", "연산"),
    "bound_memory": ("memory", "메모리"),
    "bound_communication": ("communication", "통신"),
    # alternatives and options
    "h_alternatives": ("Alternatives", "대안"),
    "h_options": ("Every option compared", "전체 구성 비교"),
    "role_pick": ("Recommended (lowest TCO)", "추천 (최저 총소유비용)"),
    "role_fastest": ("Fastest", "최단 시간"),
    "role_cheapest": ("Lowest purchase price", "최저 구매가"),
    "role_lowest_power": ("Lowest power", "최저 전력"),
    "col_role": ("", ""),
    "col_device": ("Device", "장치"),
    "col_count": ("Devices", "대수"),
    "col_time": ("Time", "시간"),
    "col_tpot": ("Time per token", "토큰당 시간"),
    "col_util": ("Utilization", "활용률"),
    "col_mem": ("Memory / device", "장치당 메모리"),
    "col_bound": ("Bound", "병목"),
    "col_power": ("Power kW", "전력 kW"),
    "col_purchase": ("Purchase", "구매가"),
    "col_tco": ("TCO", "총소유비용"),
    "col_cloud": ("Cloud", "클라우드"),
    "col_status": ("Status", "상태"),
    "status_ok": ("meets the target", "목표 충족"),
    "status_over_budget": ("over budget", "예산 초과"),
    "status_unpriced": ("no price", "가격 없음"),
    "status_rented_only": ("rented only", "임대 전용"),
    "status_discontinued": ("discontinued", "단종"),
    "status_misses": ("misses the target", "목표 미달"),
    "front_mark": ("Pareto front", "파레토 최적"),
    # charts
    "h_charts": ("Charts", "차트"),
    "chart_cost": ("Cost of ownership against time to train (options that meet the target; the Pareto front "
                   "joined)", "학습 시간별 총소유비용 (목표를 충족하는 구성; 파레토 최적선 연결)"),
    "chart_cost_serve": ("Cost of ownership against latency per request batch (options that meet the target; the "
                         "Pareto front joined)", "요청 배치당 지연 시간별 총소유비용 (목표를 충족하는 구성; 파레토 최적선 연결)"),
    "chart_cost_llm": ("Cost of ownership against time per output token (options that meet the targets; the Pareto "
                       "front joined)", "출력 토큰당 시간별 총소유비용 (목표를 충족하는 구성; 파레토 최적선 연결)"),
    "legend_deadline": ("deadline {time}", "기한 {time}"),
    "legend_target": ("target {time}", "목표 {time}"),
    "axis_time_train": ("time to train", "학습 시간"),
    "axis_latency": ("latency per request batch", "요청 배치당 지연 시간"),
    "axis_tpot": ("time per output token", "출력 토큰당 시간"),
    "axis_tco": ("total cost of ownership", "총소유비용"),
    "chart_roofline": ("{device}: the model's layers on the roofline ({precision})",
                       "{device}: 루프라인 위의 모델 레이어 ({precision})"),
    "axis_intensity": ("arithmetic intensity (FLOP/byte)", "연산 강도 (FLOP/byte)"),
    "axis_attained": ("attained FLOP/s", "달성 FLOP/s"),
    "roof_matrix": ("matrix peak", "행렬 최대 성능"),
    "roof_vector": ("vector peak", "벡터 최대 성능"),
    "legend_pick": ("recommended", "추천"),
    "roofline_caption": ("Dashed: the datasheet's peaks and memory bandwidth ({bandwidth}); solid: as the model "
                         "achieves them (compute x {compute}, memory x {memory}, calibrated). Each dot is a layer's "
                         "FLOPs over its time, forward and backward, on one device.",
                         "점선: 데이터시트의 최대 성능과 메모리 대역폭 ({bandwidth}); 실선: 모델이 달성하는 값 (연산 x "
                         "{compute}, 메모리 x {memory}, 보정값). 점 하나는 장치 하나에서 레이어의 FLOPs를 시간으로 나눈 "
                         "값입니다 (순전파와 역전파)."),
    "charts_in_html": ("Charts: in the HTML report (--format html).", "차트: HTML 보고서에 있습니다 (--format html)."),
    # excluded
    "h_excluded": ("Devices left out", "제외된 장치"),
    "ex_precision": ("no {precision} peak (it has {has})", "{precision} 성능 없음 (지원: {has})"),
    "ex_no_fit": ("the model does not fit in its {memory} per device on any count, even with ZeRO-3 and tensor "
                  "parallelism across the node",
                  "ZeRO-3와 노드 내 텐서 병렬을 써도 어떤 대수에서도 장치당 {memory}에 모델이 들어가지 않음"),
    "ex_kv_no_fit": ("the weights and the requests' KV cache do not fit in its {memory} per device on any count "
                     "(tensor and pipeline parallel, replicas)",
                     "텐서·파이프라인 병렬과 복제를 써도 어떤 대수에서도 장치당 {memory}에 가중치와 요청들의 KV 캐시가 "
                     "들어가지 않음"),
    "ex_targets": ("no count meets the latency targets: at best time to first token {ttft}, time per output token "
                   "{tpot}",
                   "어떤 대수로도 지연 목표를 충족하지 못함: 최선이 첫 토큰까지 {ttft}, 출력 토큰당 {tpot}"),
    "ex_too_many": ("needs {count} devices, more than the limit of {max} (--max-devices)",
                    "장치 {count}대가 필요하여 한도 {max}대(--max-devices)를 넘음"),
    # findings
    "short_deadline": ("No option meets the deadline {deadline}. The closest is {count} x {device} at {time} "
                       "({ratio}x the deadline): it needs a deadline of at least {time}, or faster devices.",
                       "기한 {deadline}을(를) 충족하는 구성이 없습니다. 가장 가까운 것은 {device} {count}대로 {time} "
                       "(기한의 {ratio}배)이며, 기한을 {time} 이상으로 늘리거나 더 빠른 장치가 필요합니다."),
    "short_saturated": ("Adding devices past {count} does not shorten it: the step is bound by communication, or "
                        "the global batch already covers the data in few steps.",
                        "{count}대를 넘겨 장치를 늘려도 줄지 않습니다: 스텝이 통신에 묶이거나 전체 배치가 이미 적은 "
                        "스텝으로 데이터를 처리합니다."),
    "short_cap": ("That is at the device limit of {max} (--max-devices); more devices would be faster.",
                  "장치 한도 {max}대(--max-devices)에 이르렀습니다. 장치를 더 쓰면 빨라집니다."),
    "short_latency": ("No device meets the latency target {target}; the fastest, {device}, takes {latency} per "
                      "request batch: use a smaller batch or relax the target.",
                      "지연 시간 목표 {target}을(를) 충족하는 장치가 없습니다. 가장 빠른 {device}도 요청 배치당 {latency}이(가) "
                      "걸립니다. 배치를 줄이거나 목표를 완화하십시오."),
    "over_budget_all": ("Nothing that meets the target is within the budget {budget}: the cheapest, {device}, costs "
                        "{purchase} to buy. Raise the budget or relax the target.",
                        "목표를 충족하는 구성 중 예산 {budget} 안의 것이 없습니다. 가장 싼 {device}의 구매가는 "
                        "{purchase}입니다. 예산을 늘리거나 목표를 완화하십시오."),
    "over_budget_some": ("{n} option(s) over the budget {budget} are left out of the pick (marked in the table).",
                         "예산 {budget}을(를) 넘는 구성 {n}개는 추천에서 제외했습니다 (표에 표시)."),
    "unpriced": ("{n} option(s) meet the target but have no price in the database ({devices}): give prices with "
                 "--prices FILE.",
                 "구성 {n}개는 목표를 충족하지만 데이터베이스에 가격이 없습니다 ({devices}). --prices FILE로 "
                 "가격을 주십시오."),
    "rented_only": ("{n} option(s) meet the target on devices that are rented only, never sold ({devices}): they have "
                    "no purchase price; compare their cloud cost.",
                    "구성 {n}개는 목표를 충족하지만 판매되지 않고 임대만 되는 장치입니다 ({devices}). 구매 가격이 "
                    "없으므로 클라우드 비용으로 비교하십시오."),
    "discontinued_unpriced": ("{n} option(s) meet the target on discontinued devices with no current price "
                              "({devices}).",
                              "구성 {n}개는 목표를 충족하지만 현재 가격이 없는 단종 장치입니다 ({devices})."),
    "no_candidates": ("No candidate device can run this model (see the devices left out).",
                      "이 모델을 실행할 수 있는 후보 장치가 없습니다 (제외된 장치 참조)."),
    # assumptions and validity
    "h_assumptions": ("Assumptions", "가정"),
    "col_assumption": ("Assumption", "가정"),
    "as_horizon": ("Cost of ownership over {horizon}.", "소유 비용 기간 {horizon}."),
    "as_pue": ("PUE (facility power / IT power) {pue}.", "PUE (시설 전력 / IT 전력) {pue}."),
    "as_kwh": ("Electricity {price} per kWh.", "전기 요금 kWh당 {price}."),
    "as_power": ("Power = TDP x devices x PUE; owned hardware draws it for the whole horizon (an upper bound for the "
                 "devices; host CPUs, fans and NICs are not added).",
                 "전력 = TDP x 장치 수 x PUE; 소유 장비는 기간 내내 이 전력을 씁니다 (장치에 대해서는 상한; 호스트 CPU, "
                 "팬, NIC는 더하지 않음)."),
    "as_server": ("A device priced one by one goes in servers at {cost} per device slot; where the database prices "
                  "a whole server (node price), that price is used.",
                  "개별 가격의 장치는 장치 슬롯당 {cost}의 서버에 넣습니다. 데이터베이스에 서버 전체 가격(노드 가격)이 "
                  "있으면 그 가격을 씁니다."),
    "as_server_given": ("Servers at {cost} per node (--node-cost) are added to devices priced one by one.",
                        "개별 가격의 장치에 노드당 {cost}의 서버(--node-cost)를 더합니다."),
    "as_cloud": ("Cloud: the database's most recent on-demand rate per device-hour (the lowest of that date); "
                 "compute only, no storage, egress or reservation discounts.",
                 "클라우드: 데이터베이스의 가장 최근 장치-시간당 온디맨드 요금 (같은 날짜 중 최저); 연산만, "
                 "스토리지, 전송, 예약 할인 제외."),
    "as_prices": ("Prices are the database's list, street or estimated prices of the dates shown, converted once "
                  "per unit price.",
                  "가격은 표시된 날짜의 데이터베이스 정가, 시장가 또는 추정가이며 단가마다 한 번 환산합니다."),
    "as_search": ("Devices come in a server of 1, 2, 4 ... slots below their usual node and in whole nodes past it "
                  "(devices sold only as whole servers: whole servers); the fewest that fit in "
                  "memory and meet the target, each with the fastest parallel layout the planner finds (tensor, "
                  "pipeline and data parallel, ZeRO, recomputation, micro-batch); at most {max} devices.",
                  "장치는 일반 노드보다 작으면 1, 2, 4 ... 슬롯 서버에, 그 이상은 노드 단위로 (서버 단위로만 "
                  "파는 장치는 서버 단위); 메모리에 들어가고 목표를 충족하는 가장 적은 수, 각각 플래너가 찾은 가장 "
                  "빠른 병렬 구성(텐서·파이프라인·데이터 병렬, ZeRO, 재계산, 마이크로 배치); 최대 {max}대."),
    "as_search_llm": ("Devices come in a server of 1, 2, 4 ... slots below their usual node and in whole nodes "
                      "past it (devices sold only as whole servers: whole servers); the fewest whose "
                      "replicas hold the requests' KV cache and meet the targets: tensor parallel within a node, "
                      "pipeline stages across nodes, then replicas; at most {max} devices.",
                      "장치는 일반 노드보다 작으면 1, 2, 4 ... 슬롯 서버에, 그 이상은 노드 단위로 (서버 단위로만 "
                      "파는 장치는 서버 단위); 복제본들이 요청의 KV 캐시를 담고 목표를 충족하는 가장 적은 수: 노드 안에서 "
                      "텐서 병렬, 노드를 넘으면 파이프라인 단계, 그다음 복제; 최대 {max}대."),
    "as_model": ("Times come from the performance model: a per-layer roofline with calibrated compute and memory "
                 "fractions and one framework efficiency fitted on published runs (its notes are below).",
                 "시간은 성능 모델의 예측입니다: 보정된 연산/메모리 효율과 공개 학습 사례로 맞춘 프레임워크 효율을 쓴 "
                 "레이어별 루프라인 (모델의 설명은 아래)."),
    "as_model_llm": ("Times come from the serving model: prefill and decode by the roofline with calibrated compute "
                     "and memory fractions, each divided by its efficiency fitted on published serving runs (its "
                     "notes are below).",
                     "시간은 서빙 모델의 예측입니다: 보정된 연산/메모리 효율의 루프라인으로 계산한 프리필과 디코드를 "
                     "공개 서빙 사례로 맞춘 각 효율로 나눔 (모델의 설명은 아래)."),
    "as_batch": ("Global batch {batch} per optimizer step over the whole cluster, the same on every device count "
                 "(split unevenly where the data-parallel degree does not divide it: the slowest replica sets the "
                 "step).",
                 "전체 클러스터의 옵티마이저 스텝당 전체 배치 {batch}, 장치 수와 관계없이 같음 (데이터 병렬 수로 나누어 "
                 "떨어지지 않으면 고르지 않게 나눔: 가장 느린 복제본이 스텝 시간을 정함)."),
    "as_network": ("A cluster of two or more nodes gets its network: {gbps} Gb/s NICs per node, the fewest (1, 2, 4 "
                   "... one per device) that keep the layout's step time within {tolerance} (its data-parallel, "
                   "pipeline and expert traffic re-predicted; serving: one per node unless a replica spans nodes), "
                   "and a full-bisection fat tree of {radix}-port switches: one switch up to {radix} ports, else "
                   "ceil(ports / {radix}/2) leaves and spines for their uplinks, two transceivers a link. NICs are "
                   "priced apart from the servers (a server price that includes them, as DGX systems do, counts them "
                   "twice: give --node-cost or --prices). A single server or workstation has no network, storage, rack or "
                   "installation lines.",
                   "노드 2개 이상의 클러스터에는 네트워크를 넣습니다: 노드당 {gbps} Gb/s NIC을 레이아웃의 스텝 시간을 "
                   "{tolerance} 안에서 유지하는 가장 적은 수(1, 2, 4 ... 장치당 1개)로 정하고 (데이터 병렬·파이프라인·"
                   "전문가 트래픽을 다시 예측; 서빙은 복제가 노드를 넘지 않으면 노드당 1개), {radix}포트 스위치의 "
                   "완전 이분 대역폭 팻 트리를 씁니다: {radix}포트까지 스위치 1대, 그 이상은 리프 ceil(포트 / "
                   "{radix}/2)대와 업링크를 받는 스파인, 링크당 트랜시버 2개. NIC은 서버와 따로 "
                   "셉니다 (DGX처럼 NIC이 포함된 서버 가격이면 두 번 세므로 --node-cost나 --prices를 주십시오). 서버 1대나 워크스테이션에는 네트워크, 스토리지, 랙, 설치 항목이 없습니다."),
    "as_storage": ("Training clusters: shared all-flash storage for one epoch's data (token ids 4 bytes, other "
                   "inputs 1 byte per element) and {kept} checkpoints of weights and optimizer state, in whole TB.",
                   "학습 클러스터: 한 에폭의 데이터(토큰 ID 4바이트, 그 밖의 입력은 요소당 1바이트)와 가중치·옵티마이저 "
                   "상태 체크포인트 {kept}개를 담는 공유 올플래시 스토리지, TB 단위."),
    "as_rack": ("Racks of {kw} kW: nodes per rack = {kw} kW / (TDP x devices per node x {overhead}), at least one.",
                "랙당 {kw} kW: 랙당 노드 수 = {kw} kW / (TDP x 노드당 장치 수 x {overhead}), 최소 1개."),
    "as_install": ("Installation and integration of a cluster: {share} of its hardware.",
                   "클러스터 설치 및 통합: 하드웨어의 {share}."),
    "as_support": ("Support: {share} of the hardware a year for every year of the horizon after the first (the "
                   "first is under warranty).",
                   "지원: 첫해(보증 기간) 이후 기간의 매년 하드웨어의 {share}."),
    "as_tax": ("Tax / VAT {rate} on every purchase line (hardware, installation, support); electricity as priced.",
               "모든 구매 항목(하드웨어, 설치, 지원)에 세금/부가가치세 {rate}; 전기료는 주어진 가격 그대로."),
    "as_tax_none": ("No tax or VAT is included (--tax-rate PCT adds it).",
                    "세금이나 부가가치세는 포함하지 않았습니다 (--tax-rate PCT로 추가)."),
    "as_fx": ("Exchange rate {rate}; the database's prices are US dollars.",
              "환율 {rate}; 데이터베이스 가격은 미국 달러입니다."),
    "as_budget": ("The budget {budget} applies to the purchase price; electricity is an operating cost shown apart.",
                  "예산 {budget}은(는) 구매가에 적용하며 전기료는 운영비로 따로 보입니다."),
    "price_age_years": ("{device}: price of {date}, {n} year(s) old at the quote's date.",
                        "{device}: {date} 기준 가격으로, 견적일 기준 {n}년 지났습니다."),
    "price_age_months": ("{device}: price of {date}, {n} month(s) old at the quote's date.",
                         "{device}: {date} 기준 가격으로, 견적일 기준 {n}개월 지났습니다."),
    "dev_discontinued": ("{device} is discontinued (end of life): new units, support and spares may be hard to get.",
                         "{device}: 단종(판매 종료) 제품입니다. 신품, 기술 지원, 예비 부품을 구하기 어려울 수 있습니다."),
    "dev_licence": ("{device}: licence terms apply, as the database states them: {terms}",
                    "{device}: 사용 허가 조건이 있습니다 (데이터베이스 원문 그대로): {terms}"),
    "h_notes": ("Performance model notes (as the model states them)", "성능 모델 설명 (모델이 밝힌 그대로)"),
    "h_validity": ("Validity", "유효성"),
    "validity": ("Prices are list, street or estimated prices from the hardware database as of the dates shown, not "
                 "offers; a vendor's quote replaces them (sizing quote ... --prices FILE, format in hwdb/README.md). "
                 "Times and power are model predictions, not measurements.",
                 "가격은 표시된 날짜 기준 하드웨어 데이터베이스의 정가, 시장가 또는 추정가이며 판매 제안이 아닙니다. "
                 "공급업체 견적으로 바꾸려면 sizing quote ... --prices FILE을 쓰십시오 (형식: hwdb/README.md). 시간과 "
                 "전력은 측정값이 아닌 모델 예측입니다."),
    # durations
    "unit_years": ("years", "년"),
    "unit_year": ("year", "년"),
    "unit_days": ("days", "일"),
    "unit_day": ("day", "일"),
    "unit_h": ("h", "시간"),
    "unit_min": ("min", "분"),
    "unit_s": ("s", "초"),
    "unit_ms": ("ms", "ms"),
    "unit_us": ("us", "µs"),
}


_FORMATTER = string.Formatter()


def text(lang: str, key: str, **params) -> str:
    """The string ``key`` in ``lang`` with its fields filled; in Korean, a particle written in both forms right
    after a field (``{time}이(가)``) takes the form that the filled value's last sound calls for (``particle``)."""
    template = STRINGS[key][LANGS.index(lang)]
    if lang != "ko":
        return template.format(**params)
    out, value = [], None
    for literal, name, spec, conv in _FORMATTER.parse(template):
        out.append(literal if value is None else particle(value, literal))
        value = None
        if name is not None:
            value = _FORMATTER.format_field(_FORMATTER.convert_field(params[name], conv), spec or "")
            out.append(value)
    return "".join(out)


# A particle's two forms: after a final consonant, after a vowel (and for (으)로, after ㄹ too)
PARTICLES = {"이(가)": ("이", "가"), "을(를)": ("을", "를"), "은(는)": ("은", "는"), "과(와)": ("과", "와"),
             "(으)로": ("으로", "로")}
_RIEUL = 8                                                  # the final-consonant index of ㄹ
# Sino-Korean readings of a last digit (영 일 이 삼 사 오 육 칠 팔 구) and of a run of trailing zeros (십 백 천 만)
_DIGIT_FINAL = (21, _RIEUL, 0, 16, 0, 0, 1, _RIEUL, _RIEUL, 0)
_ZEROS_FINAL = {1: 17, 2: 1, 3: 0, 0: 4}                    # zeros % 4: 십 (ㅂ), 백 (ㄱ), 천, 만/억 (ㄴ/ㄱ)
_MONEY_FINAL = {"₩": 4, "$": 0}                              # an amount reads ...원 (ㄴ), ...달러
_LETTER_FINAL = {"l": _RIEUL, "m": 16, "n": 4, "r": _RIEUL}  # English letter names: 엘 엠 엔 알; others end open


def final_consonant(word: str) -> int:
    """The final consonant (jongseong index, 0 for none) of ``word`` as read aloud in Korean: a Hangul syllable's
    own (Unicode: (code - 0xAC00) % 28); a number read in Sino-Korean (1.09 -> 구, 100 -> 백, 5,000 -> 천);
    Latin letters by their names (h100-sxm -> 엠, ms and GiB end open); an amount in won or dollars by its
    currency (원, 달러). Closing brackets and spaces are skipped."""
    w = word.rstrip(" )]}\"'")
    if not w:
        return 0
    c, token = w[-1], w.split()[-1]
    for symbol, final in _MONEY_FINAL.items():
        if symbol in token:
            return final
    if "가" <= c <= "힣":
        return (ord(c) - 0xAC00) % 28
    if c.isdigit():
        digits = w[len(w.rstrip("0123456789,.")):].replace(",", "")
        if "." in digits or not digits.endswith("0"):
            return _DIGIT_FINAL[int(c)]
        zeros = len(digits) - len(digits.rstrip("0"))
        return _DIGIT_FINAL[0] if zeros == len(digits) else _ZEROS_FINAL[zeros % 4]
    return _LETTER_FINAL.get(c.lower(), 0)


def particle(word: str, literal: str) -> str:
    """``literal`` (the text after ``word``) with a two-form particle at its start resolved for ``word``."""
    for both, (closed, open_) in PARTICLES.items():
        if literal.startswith(both):
            final = final_consonant(word)
            closed_form = final and not (both == "(으)로" and final == _RIEUL)
            return (closed if closed_form else open_) + literal[len(both):]
    return literal


# The performance model's notes (sizing/predict: calibration, setup, search, serving) in Korean: (pattern,
# template of its groups). A note no pattern matches is shown as the model wrote it; tests/test_quote_html.py
# checks every note the model writes for the shipped examples has its pattern.
_RECOMPUTE = {"none": "없음", "selective": "선택", "full": "전체"}
NOTES_KO = (
    (r"(compute|memory) fraction ([\d.]+) measured on (.+)",
     lambda m: f"{_FRACTION[m[1]]} {m[2]}: {m[3]}에서 측정"),
    (r"(compute|memory) fraction ([\d.]+): median of all devices measured \(none for (.+)\)",
     lambda m: f"{_FRACTION[m[1]]} {m[2]}: 측정된 전체 장치의 중앙값 ({m[3]} 측정값 없음)"),
    (r"(compute|memory) fraction ([\d.]+): median of (.+) devices measured \(none for (.+)\)",
     lambda m: f"{_FRACTION[m[1]]} {m[2]}: 측정된 {m[3]} 장치의 중앙값 ({m[4]} 측정값 없음)"),
    (r"device 'local': the bench profile's figures are measured, used as they are",
     lambda m: "장치 'local': 벤치 프로파일의 수치는 측정값이므로 그대로 씀"),
    (r"framework efficiency ([\d.]+), fitted on published training runs",
     lambda m: f"프레임워크 효율 {m[1]}, 공개된 학습 사례에 맞춤"),
    (r"matrix products at the precision's peak \(tensor cores where the device has them\); other ops at the "
     r"vector peak(; matrix products' 256 x 128 tiles in waves over (\d+) SMs)?(; no kernel shorter than its (\S+) us "
     r"issue time)?",
     lambda m: "행렬곱은 그 정밀도의 최대 성능(장치에 텐서 코어가 있으면 텐서 코어), 나머지 연산은 벡터 최대 성능"
               + (f"; 행렬곱의 256 x 128 타일은 SM {m[2]}개에 웨이브 단위로 실행" if m[1] else "")
               + (f"; 어떤 커널도 실행 개시 시간 {m[4]} us보다 짧지 않음" if m[3] else "")),
    (r"a framework fills at most (\d+)% of each device's memory \(the rest: CUDA context, workspaces, communication "
     r"buffers, fragmentation\)",
     lambda m: f"프레임워크는 장치 메모리의 최대 {m[1]}%만 씀 (나머지: CUDA 컨텍스트, 작업 공간, 통신 버퍼, 단편화)"),
    (r"layout (.+) \(global batch (\d+)\); tensor parallelism within nodes of (\d+)(, 1F1B pipeline)?",
     lambda m: f"병렬 구성 {_layout_ko(m[1])} (전체 배치 {m[2]}); 텐서 병렬은 장치 {m[3]}대 노드 안에서"
               + (", 1F1B 파이프라인" if m[4] else "")),
    (r"(?:interconnect (\S+) GB/s per device \(half each way\)|no interconnect figure \(devices talk over the "
     r"network\)), network (\S+) GB/s per device each way; gradient communication overlaps (\d+%) of the last "
     r"micro-batch's backward \(all compute under ZeRO-3\)",
     lambda m: (f"장치당 인터커넥트 {m[1]} GB/s (방향마다 절반)" if m[1] else "인터커넥트 수치 없음 (장치 간 통신은 네트워크로)")
               + f", 네트워크 방향마다 장치당 {m[2]} GB/s; 기울기 통신은 마지막 마이크로 배치 역전파의 {m[3]}와 겹침 "
                 f"(ZeRO-3에서는 모든 연산과 겹침)"),
    (r"energy: TDP (\S+) W per device for the whole run x PUE (\S+)",
     lambda m: f"에너지: 실행 내내 장치당 TDP {m[1]} W x PUE {m[2]}"),
    (r"energy: (.+) has no TDP in the hardware database", lambda m: f"에너지: 하드웨어 데이터베이스에 {m[1]}의 TDP 없음"),
    (r"global batch (\d+) sequences of (\d+) tokens \(([\d.]+)M tokens per step: 4M as Llama 2 trained, at least "
     r"one sequence per 8 devices; set --global-batch\)",
     lambda m: f"전체 배치 시퀀스 {m[1]}개, 시퀀스당 토큰 {m[2]}개 (스텝당 토큰 {m[3]}M개: Llama 2 학습과 같은 4M, "
               "장치 8대당 시퀀스 최소 1개; --global-batch로 바꿈)"),
    (r"global batch (\d+) samples \(ResNet-50's reference batch of 256, at least one per device; set "
     r"--global-batch\)",
     lambda m: f"전체 배치 샘플 {m[1]}개 (ResNet-50의 기준 배치 256, 장치당 최소 1개; --global-batch로 바꿈)"),
    (r"global batch (\d+) split unevenly: no data-parallel degree on (\d+) devices divides it, so each of the "
     r"(\d+) replicas runs up to (\d+) samples and the step costs what (\d+) would",
     lambda m: f"전체 배치 {m[1]} 불균등 분할: 장치 {m[2]}대에서 나누어 떨어지는 데이터 병렬 수가 없어 복제본 "
               f"{m[3]}개가 각각 최대 {m[4]}개 샘플을 처리하고, 스텝 시간은 {m[5]}개일 때와 같음"),
    (r"decode attention reads each key/value head's cache once for its query heads \(XQA, FlashInfer, FlashDecoding "
     r"kernels\)", lambda m: "디코드 어텐션은 키/값 헤드의 캐시를 그 쿼리 헤드들을 위해 한 번 읽음 (XQA, FlashInfer, "
                             "FlashDecoding 커널)"),
    (r"engine (\S+): decode attention reads each key/value head's cache once per query head \(([\d.]+) times\)",
     lambda m: f"엔진 {m[1]}: 디코드 어텐션이 키/값 헤드의 캐시를 쿼리 헤드마다 읽음 ({m[2]}번)"),
    (r"weights, KV cache and activations fill at most (\d+)% of each device's memory \(vLLM's default "
     r"--gpu-memory-utilization\)", lambda m: f"가중치, KV 캐시, 활성값은 장치 메모리의 최대 {m[1]}%까지 씀 (vLLM의 기본 "
                                            f"--gpu-memory-utilization)"),
    (r"matrix products, attention and each other op \(norms, residual adds, activations\) at its own roofline, one "
     r"after another(?:; no kernel shorter than its (\S+) us issue time)?",
     lambda m: "행렬곱, 어텐션, 그 밖의 연산(정규화, 잔차 덧셈, 활성화)을 차례로 각자의 루프라인으로"
               + (f"; 어떤 커널도 발행 시간 {m[1]} us보다 짧지 않음" if m[1] else "")),
    (r"time to first token with (\d+) requests in flight is a lower bound: NVIDIA NIM 1\.8's published runs under "
     r"load measure more \(this model comes out a median (\d+)% low against them; benchmarks/bench_serving\.py\)",
     lambda m: f"요청 {m[1]}개가 동시에 처리될 때의 첫 토큰 시간은 하한입니다: NVIDIA NIM 1.8의 공개 부하 측정값이 더 "
               f"큽니다 (이 모델은 그 측정값보다 중앙값 {m[2]}% 낮게 나옴; benchmarks/bench_serving.py)"),
    (r"serving efficiency ([\d.]+) for prefill, ([\d.]+) for decode, fitted on published serving runs \(apart from "
     r"training's\)", lambda m: f"서빙 효율 프리필 {m[1]}, 디코드 {m[2]}, 공개된 서빙 사례에 맞춤 (학습과 별도)"),
    (r"weights (\S+)(?: \((\d+)-bit, groups of (\d+) with an fp16 scale and a zero point; embeddings and norms in "
     r"16 bits\))?; KV cache (\S+); matmuls in (\S+)",
     lambda m: f"가중치 {m[1]}" + (f" ({m[2]}비트, fp16 스케일과 영점을 둔 {m[3]}개 단위 그룹; 임베딩과 정규화는 16비트)"
                                  if m[2] else "") + f"; KV 캐시 {m[4]}; 행렬곱 {m[5]}"),
    (r"(continuous|static) batching: (\d+) sequence\(s\) per replica at an average context of (\S+) tokens"
     r"(; each request's prefill interleaves with the decode steps \(a request lasts \(O - 1\) T_d \+ c T_p\))?",
     lambda m: f"{'연속' if m[1] == 'continuous' else '정적'} 배칭: 복제당 시퀀스 {m[2]}개, 평균 컨텍스트 토큰 "
               f"{m[3]}개" + ("; 요청마다 프리필이 디코드 스텝 사이에 끼어듦 (요청 하나가 (O - 1) T_d + c T_p)" if m[4] else "")),
)
_FRACTION = {"compute": "연산 효율", "memory": "메모리 효율"}
_NOTES_KO = tuple((re.compile(p), f) for p, f in NOTES_KO)


def _layout_ko(layout: str) -> str:
    """'TP 1 x PP 2 (interleaved 2) x DP 4, ZeRO-1, recompute selective, SP, micro-batch 2 x 128' in Korean."""
    out = re.sub(r"recompute (\w+)", lambda m: "재계산 " + _RECOMPUTE.get(m[1], m[1]), layout)
    return out.replace("(interleaved ", "(인터리브 ").replace("micro-batch", "마이크로 배치")


def model_note(lang: str, note: str) -> str:
    """One of the performance model's notes in ``lang`` (English as written)."""
    if lang == "ko":
        for pattern, template in _NOTES_KO:
            m = pattern.fullmatch(note)
            if m:
                return template(m)
    return note
