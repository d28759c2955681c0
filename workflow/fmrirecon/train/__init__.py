"""Training infrastructure shared by every trained method: device placement, the resumable loop
(one optimiser or several phases, with throughput/memory summaries), atomic checkpoints loaded
without unpickling code, preemption handling, learning-rate schedules, model files, and the
data-parallel launcher (torchrun) with its worker."""
