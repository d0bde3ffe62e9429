"""Evaluation: batched rollouts, scores and the evaluation callback."""

from lit_omarl.eval.callback import EvaluationCallback
from lit_omarl.eval.rollout import evaluate, run_episodes

__all__ = ["EvaluationCallback", "evaluate", "run_episodes"]
