"""The task-agnostic training loop and what it writes: checkpoints, TensorBoard, run folders."""
