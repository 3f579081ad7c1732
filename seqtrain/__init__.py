"""seqtrain: train recurrent sequence models from the command line or from Python.

The Python API (seqtrain/api.py) is importable from here; importing it does not import torch.
"""

from seqtrain.api import Model, Run, Setting, TaskInfo, fit, list_tasks, load
from seqtrain.errors import SeqtrainError

__version__ = "0.1.0"
__all__ = ["Model", "Run", "SeqtrainError", "Setting", "TaskInfo", "fit", "list_tasks", "load", "__version__"]
