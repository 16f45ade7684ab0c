"""Training: the alternating D/G step, the loop with checkpoint/resume, DDP, progress and metrics logging."""
