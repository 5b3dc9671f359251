"""Stage 3, the performance model: workload, layout, training and inference predictions, calibration."""
