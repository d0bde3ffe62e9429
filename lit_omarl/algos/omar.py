"""OMAR (Pan et al., ICML 2022) in discrete action spaces, and its ablation ICQL.

OMAR = independent learners (each agent its own critic Q_i and actor pi_i,
no mixer, other agents part of the environment) + CQL on every Q_i + a
zeroth-order "OMAR" step that pulls each policy toward the best action a
sampling search finds in Q_i. OMAR is continuous-action; the CFCQL paper
(App. C.3) and InSPO (Tables 1-4) use "a version in discrete action space
based on the open-source implementation", which is what this module is.
ICQL (independent CQL) is the same learner without the OMAR term.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, OfflineMARLModule, register_algorithm
from lit_omarl.algos.losses import ensure_some_available, masked_log_softmax, masked_mean, policy_actions, td_lambda_targets
from lit_omarl.algos.losses.omar import (
    bootstrap_values,
    independent_cql_loss,
    omar_actor_loss,
    omar_targets,
    policy_gradient_loss,
    target_nll,
)
from lit_omarl.nets.agents import make_agent
from lit_omarl.utils.rng import CheckpointedGenerator


@register_algorithm("omar")
class OMAR(OfflineMARLModule):
    """Discrete OMAR: independent CQL critics + policy gradient + zeroth-order policy target.

    Critic of agent i (parameters shared across agents with an id one-hot),
    one Adam step per batch (the main optimizer, counted in global_step):

        L_Q = mean (Q_i(x_i, a_i) - y_i)^2 + cql_alpha * mean[ log sum_j exp Q_i(x_i, j) - Q_i(x_i, a_i) ]

    with x_i = [state, o_i, id_i] (``critic_inputs="state_obs"``, the code) or
    [o_i, id_i], and y_i the TD(lambda) return of the team reward
    bootstrapped from the target critic at the next dataset action
    (``target_action="data"``, the code) or under pi_i ("policy", the paper).

    Actor of agent i, after the critic step, with Q_i from the updated critic:

        L_pi = (1 - omar_coe) * L_pg + omar_coe * ( - log pi_i(a*_i | tau_i) )

    L_pg = - mean[(Q_i(a_i) - sum_a pi_i(a) Q_i(a)) log pi_i(a_i)] on dataset
    actions (``pg_mode="dataset_advantage"``, the code) or - mean sum_a pi_i(a) Q_i(a)
    (``"expected_q"``, the discrete analogue of OMAR's deterministic policy
    gradient). a*_i is the OMAR target: a CEM-like search over the action
    INDEX (mu = sigma = A/2; ``omar_iters`` rounds of ``omar_num_samples``
    Gaussian draws rounded to the nearest index, mu refitted as the
    softmax(Q)-weighted mean of the samples, sigma as their spread + 0.01),
    whose best last-round sample replaces the policy's greedy action when its
    Q_i is strictly higher (see :func:`~lit_omarl.algos.losses.omar.omar_index_search`).
    ``use_omar=False`` drops the term: ICQL (also registered as "icql").

    Deviations (from the CFCQL code's ``omar_learner`` + ``baseline_omar.yaml``):
        - One critic update per batch over all time steps; the code makes one
          critic update per time step of the batch (T updates per batch).
        - The OMAR term is the NLL of the target under the masked softmax
          policy; the code applies ``cross_entropy`` to the already
          softmaxed probabilities (a double softmax, which flattens its gradient).
        - Adam for the actor (InSPO: "all networks are optimized by Adam");
          the code uses RMSprop for the actor and Adam for the critic.
        - The critic is a plain 3-layer ReLU MLP (or GRU agent with
          ``critic_agent="rnn"``); the code's critic has a dueling v + a head.
        - Where the next dataset action is not in the batch (transition
          batches, an episode's last step) the "data" target falls back to
          the policy expectation (the code reads a padded action there).
        - Target copies every ``target_update_interval`` gradient steps (the
          code counts sampled episodes).
        - The logsumexp runs over all actions as in the code; set
          ``cql_mask_unavailable`` to exclude unavailable ones.
        - The search's noise comes from a torch.Generator seeded with
          ``seed`` (its state is checkpointed).
    Evaluation is greedy over available actions (the code's test mode).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        actor_lr: Adam learning rate of the policies (code 1e-4).
        critic_lr: Adam learning rate of the critics (code 1e-4).
        grad_clip_norm: gradient-norm clipping of actor and critic (<= 0 disables).
        td_lambda: lambda of the per-agent TD(lambda) targets (code 0.6).
        target_update_interval: gradient steps between hard target-critic copies.
        cql_alpha: CQL weight (code 5; InSPO tunes it in {0, 0.1, 0.5, 1, 2, 3, 4, 5, 10}).
        cql_mask_unavailable: exclude unavailable actions from the logsumexp.
        use_omar: add the OMAR policy term (False = ICQL).
        omar_coe: weight of the OMAR term in the actor loss (code 0.5).
        omar_iters: rounds of the sampling search (code 5).
        omar_num_samples: samples per round (code 10).
        pg_mode: "dataset_advantage" (code) or "expected_q".
        target_action: "data" (code, SARSA-style) or "policy".
        critic_agent: "mlp" (code) or "rnn" (needs episode batches).
        critic_hidden_dim: hidden size of the critic (code 256).
        critic_inputs: "state_obs" (code: global state + own obs + id) or "obs" (fully independent).
        **kwargs: arguments of :class:`OfflineMARLModule` (gamma, agent for the
            policy, agent_hidden_dim, use_agent_id, use_last_action, eval settings, seed).
    """

    def __init__(
        self,
        spec: dict | None = None,
        actor_lr: float = 1e-4,
        critic_lr: float = 1e-4,
        grad_clip_norm: float = 10.0,
        td_lambda: float = 0.6,
        target_update_interval: int = 200,
        cql_alpha: float = 5.0,
        cql_mask_unavailable: bool = False,
        use_omar: bool = True,
        omar_coe: float = 0.5,
        omar_iters: int = 5,
        omar_num_samples: int = 10,
        pg_mode: Literal["dataset_advantage", "expected_q"] = "dataset_advantage",
        target_action: Literal["data", "policy"] = "data",
        critic_agent: Literal["mlp", "rnn"] = "mlp",
        critic_hidden_dim: int = 256,
        critic_inputs: Literal["state_obs", "obs"] = "state_obs",
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if pg_mode not in ("dataset_advantage", "expected_q"):
            raise ValueError(f"pg_mode must be 'dataset_advantage' or 'expected_q', got {pg_mode!r}")
        if target_action not in ("data", "policy"):
            raise ValueError(f"target_action must be 'data' or 'policy', got {target_action!r}")
        if critic_inputs not in ("state_obs", "obs"):
            raise ValueError(f"critic_inputs must be 'state_obs' or 'obs', got {critic_inputs!r}")
        if omar_iters < 1 or omar_num_samples < 1:
            raise ValueError(f"omar_iters and omar_num_samples must be >= 1, got {omar_iters}, {omar_num_samples}")
        if not 0.0 <= omar_coe <= 1.0:
            raise ValueError(f"omar_coe must be in [0, 1], got {omar_coe}")
        s = self.spec
        self.policy = self.make_agent_net(s.n_actions)
        critic_in = s.obs_dim + s.n_agents + (s.state_dim if critic_inputs == "state_obs" else 0)
        self.critic = make_agent(critic_agent, critic_in, s.n_actions, critic_hidden_dim)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.search_rng = CheckpointedGenerator(self.hparams.seed, "omar_generator")

    # ---- capabilities, optimisers, acting --------------------------------------
    @property
    def requires_episodes(self) -> bool:
        return super().requires_episodes or self.hparams.critic_agent == "rnn"

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        critic = torch.optim.Adam(self.critic.parameters(), lr=self.hparams.critic_lr)  # main: counts global steps
        actor = torch.optim.Adam(self.policy.parameters(), lr=self.hparams.actor_lr)
        return [critic, actor]

    def _policy_step(self, inputs: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        return self.policy.step(inputs, h)

    def _select_actions(self, out: torch.Tensor, avail: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return policy_actions(out, avail, deterministic)

    # ---- the search's random stream (checkpointed) ----------------------------
    # ---- training ----------------------------------------------------------------
    def critic_inputs(self, batch: Batch) -> torch.Tensor:
        """[B, L+1, N, in] critic inputs: ([state,] obs_i, agent id one-hot)."""
        obs = batch["obs"]
        b, t, n, _ = obs.shape
        parts = [obs, torch.eye(n, dtype=obs.dtype, device=obs.device).expand(b, t, n, n)]
        if self.hparams.critic_inputs == "state_obs":
            parts.insert(0, batch["state"].unsqueeze(2).expand(b, t, n, batch["state"].shape[-1]))
        return torch.cat(parts, dim=-1)

    def per_agent_td_targets(self, batch: Batch, values: torch.Tensor) -> torch.Tensor:
        """TD(lambda) targets [B, L, N] of the team reward, one backward recursion per agent."""
        b, steps1, n = values.shape
        flat = lambda x: x.unsqueeze(1).expand(b, n, x.shape[1]).reshape(b * n, x.shape[1])  # noqa: E731
        targets = td_lambda_targets(
            flat(batch["reward"]),
            flat(batch["terminated"]),
            flat(batch["mask"]),
            values.permute(0, 2, 1).reshape(b * n, steps1),
            self.hparams.gamma,
            self.hparams.td_lambda,
        )
        return targets.reshape(b, n, steps1 - 1).permute(0, 2, 1)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions = batch["mask"], batch["actions"]
        avail = ensure_some_available(batch["avail_actions"])  # [B, L+1, N, A]
        critic_in = self.critic_inputs(batch)
        logits, _ = self.policy.forward_seq(self.sequence_inputs(batch, include_last_obs=True))
        logp = masked_log_softmax(logits, avail)  # [B, L+1, N, A]

        # ---- critics: TD(lambda) + CQL, independent per agent
        with torch.no_grad():
            target_q, _ = self.target_critic.forward_seq(critic_in)
            values = bootstrap_values(target_q, actions, mask, logp.detach().exp(), hp.target_action)
            targets = self.per_agent_td_targets(batch, values)
        q_all, _ = self.critic.forward_seq(critic_in)
        critic_loss, cql, td, q_taken = independent_cql_loss(
            q_all[:, :-1], actions, avail[:, :-1], targets, mask, hp.cql_alpha, hp.cql_mask_unavailable
        )
        self.optimise(self.main_optimizer(), critic_loss, hp.grad_clip_norm)
        if self.trainer.global_step % hp.target_update_interval == 0:
            self.target_critic.load_state_dict(self.critic.state_dict())

        # ---- actors: policy gradient (+ OMAR target), with the updated critic
        with torch.no_grad():
            q_new = self.critic.forward_seq(critic_in)[0][:, :-1]
        logp, avail_t = logp[:, :-1], avail[:, :-1]
        pg = policy_gradient_loss(logp, q_new, actions, mask, hp.pg_mode)
        omar_nll, metrics = None, {}
        if hp.use_omar:
            with torch.no_grad():
                greedy = logp.detach().argmax(-1)  # masked log-probs: greedy among available actions
                noise = torch.randn(
                    (hp.omar_iters, *greedy.shape, hp.omar_num_samples),
                    generator=self.search_rng.get(greedy.device),
                    device=greedy.device,
                )
                target_actions = omar_targets(q_new, avail_t, greedy, noise)
                metrics["omar_target_changed"] = masked_mean((target_actions != greedy).float(), mask.unsqueeze(-1))
            omar_nll = target_nll(logp, target_actions, mask)
            metrics["omar_nll"] = omar_nll.detach()
        actor_loss = omar_actor_loss(pg, omar_nll, hp.omar_coe)
        actor_opt = self.raw_optimizer(1)  # secondary: does not advance global_step
        actor_opt.zero_grad()
        self.manual_backward(actor_loss)
        if hp.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), hp.grad_clip_norm)
        actor_opt.step()

        with torch.no_grad():
            m = mask.unsqueeze(-1)
            metrics.update(
                {
                    "loss": critic_loss.detach(),
                    "td_loss": td.detach(),
                    "cql_gap": cql.detach(),
                    "q_taken_mean": masked_mean(q_taken.detach(), m),
                    "target_mean": masked_mean(targets, m),
                    "actor_loss": actor_loss.detach(),
                    "pg_loss": pg.detach(),
                    "pi_max_mean": masked_mean(logp.detach().exp().max(-1).values, m),
                }
            )
        self.log_train(metrics)


@register_algorithm("icql")
class ICQL(OMAR):
    """ICQL: :class:`OMAR` without the OMAR term (independent CQL actor-critics).

    The "based on independent CQL" baseline of the OMAR and CFCQL papers;
    identical to ``OMAR(use_omar=False)``.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        use_omar: keep False for ICQL.
        **kwargs: arguments of :class:`OMAR`.
    """

    def __init__(self, spec: dict | None = None, use_omar: bool = False, **kwargs: Any) -> None:
        super().__init__(spec=spec, use_omar=use_omar, **kwargs)
