"""Collective communication in closed form: ring and hierarchical all-reduce (the alpha-beta model), the
bandwidth inside a node, and the pipeline bubble."""
from __future__ import annotations


# Per-step latency of a ring (the alpha of the alpha-beta model, Thakur, Rabenseifner and Gropp 2005): a few
# microseconds per hop inside a node (NVLink / PCIe through NCCL) and more across the network (InfiniBand or
# RoCE, NIC and NCCL proxy included). Without it a ring of 10^4 members would cost nothing more than one of 8.
INTRA_HOP_SECONDS = 5e-6


INTER_HOP_SECONDS = 15e-6


def ring_allreduce_seconds(nbytes: int, n: int, bytes_per_s: float, hop_seconds: float = 0.0) -> float:
    """Ring all-reduce of ``nbytes`` over ``n`` members: each sends and receives 2 (n - 1) / n of the data
    (reduce-scatter then all-gather; Patarasuk and Yuan 2009) in 2 (n - 1) steps, so
    time = 2 (n - 1) x hop latency + 2 (n - 1) / n x bytes / bandwidth."""
    if n <= 1 or nbytes == 0:
        return 0.0
    return 2 * (n - 1) * hop_seconds + 2 * (n - 1) / n * nbytes / bytes_per_s


def allreduce_seconds(nbytes: int, members: int, per_node: int, intra_bps: float, inter_bps: float,
                      intra_hop: float = 0.0, inter_hop: float = 0.0) -> float:
    """Hierarchical all-reduce over ``members`` devices, ``per_node`` of them in each node: a ring inside the node
    over the interconnect (reduce-scatter and all-gather of all ``nbytes``), and between them a ring across the
    ``members / per_node`` nodes of each device's 1 / per_node share over the network."""
    k = max(1, min(per_node, members))
    nodes = -(-members // k)
    return (ring_allreduce_seconds(nbytes, k, intra_bps, intra_hop)
            + ring_allreduce_seconds(nbytes // k, nodes, inter_bps, inter_hop))


def interconnect_bps(device, network_bps: float) -> float:
    """Per-direction device-to-device bandwidth inside a node: half the interconnect figure, which hwdb records
    print bidirectional; the network where the record has none."""
    return device.interconnect_gbs * 1e9 / 2 if device.interconnect_gbs else network_bps


def pipeline_bubble(stages: int, micro_batches: int) -> float:
    """Idle share added by a 1F1B pipeline: (p - 1) / m (Narayanan et al. 2021, section 2.2.1)."""
    return (stages - 1) / micro_batches
