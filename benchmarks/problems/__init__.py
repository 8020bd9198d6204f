from .base import Problem, evaluate_tasks
from .domain_adaptation import DomainAdaptationProblem
from .multitask import MultiTaskProblem

__all__ = ["Problem", "DomainAdaptationProblem", "MultiTaskProblem", "evaluate_tasks"]
