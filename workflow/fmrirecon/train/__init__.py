"""Training infrastructure shared by every trained method: device placement, the resumable loop,
atomic checkpoints with preemption handling, learning-rate schedules, and model files."""
