"""Budgets shared by several reproduction scripts (one place to change them)."""

from __future__ import annotations

from lit_omarl.repro.table import Profile

PAPER_SEEDS = (0, 1, 2, 3, 4)


def matrix_game_profiles() -> tuple[Profile, ...]:
    """One-step matrix games (inspo.md Tables 1-2): cheap, so the default profile runs all 5 seeds."""
    return (
        Profile("smoke", seeds=(0,), budget={"max_steps": 60, "eval_every_steps": 0, "final_eval_episodes": 200,
                                              "behaviour_pretrain_steps": 20, "episodes": 200},
                description="pipeline check: 60 updates, 1 seed"),
        Profile("default", seeds=PAPER_SEEDS, budget={"max_steps": 3000, "eval_every_steps": 500, "final_eval_episodes": 1000},
                description="3000 updates per run, 5 seeds, 1000 evaluation episodes"),
        Profile("paper", seeds=PAPER_SEEDS, budget={"max_steps": 10_000_000, "eval_every_steps": 10_000, "final_eval_episodes": 32},
                num_gpus=0.25, description="inspo.md App. C.4: 1e7 training steps, 32 evaluation episodes, 5 seeds"),
    )


def bridge_profiles() -> tuple[Profile, ...]:
    """Bridge (inspo.md Table 3): 50-step episodes."""
    return (
        Profile("smoke", seeds=(0,), budget={"max_steps": 40, "eval_every_steps": 0, "final_eval_episodes": 16,
                                              "behaviour_pretrain_steps": 20},
                description="pipeline check: 40 updates, 1 seed"),
        Profile("default", seeds=(0, 1, 2), budget={"max_steps": 3000, "eval_every_steps": 1000, "final_eval_episodes": 64},
                description="3000 updates per run, 3 seeds, 64 evaluation episodes"),
        Profile("paper", seeds=PAPER_SEEDS, budget={"max_steps": 10_000_000, "eval_every_steps": 10_000, "final_eval_episodes": 32},
                num_gpus=0.25, description="inspo.md App. C.4: 1e7 training steps, 32 evaluation episodes, 5 seeds"),
    )
