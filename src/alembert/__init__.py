"""alembert: knowledge distillation of pre-trained language encoders into small, fast students."""
from alembert.api import distill, evaluate, finetune

__all__ = ["distill", "evaluate", "finetune"]
__version__ = "0.1.0"
