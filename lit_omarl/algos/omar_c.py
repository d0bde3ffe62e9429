"""OMAR (Pan et al., ICML 2022) in continuous action spaces, and its ablation ICQL-C.

Independent learners: each agent i has its own twin critic Q_i(o_i, a_i) and
deterministic actor pi_i(o_i), the other agents are part of the environment.
Each critic gets a CQL penalty; each actor mixes the deterministic policy
gradient with a regression onto the best action a zeroth-order sampling
search finds in Q_i ("offline multi-agent reinforcement learning with actor
rectification"). ICQL-C (independent CQL) is the same learner without the search.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, register_algorithm
from lit_omarl.algos.continuous_base import ContinuousActorCritic, frozen
from lit_omarl.algos.losses import masked_mean
from lit_omarl.algos.losses.advantage import soft_update, value_targets
from lit_omarl.algos.losses.continuous import action_l2, cql_action_samples, ensemble_step_mean, independent_cql_c_gap
from lit_omarl.algos.losses.omar_c import omar_actor_loss, omar_search, omar_target
from lit_omarl.algos.losses.td3 import smoothed_target_actions
from lit_omarl.nets.continuous import AgentCritic


def agent_reward_terminated(batch: Batch, n_agents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's reward and termination as seen by each agent's learner, broadcastable to [B, L, N].

    A joint batch has the team reward [B, L] (returned as [B, L, 1], shared by the agents); a batch of
    per-agent datasets (``data.agent_paths``) has [B, L, N], agent i's from its own file (returned as is).
    """
    out = []
    for key in ("reward", "terminated"):
        x = batch[key]
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        elif x.dim() != 3 or x.shape[-1] != n_agents:
            raise ValueError(f"batch[{key!r}] must be [B, L] (team) or [B, L, N={n_agents}] (per agent), got {tuple(x.shape)}")
        out.append(x)
    return out[0], out[1]


@register_algorithm("omar_c")
class OMARC(ContinuousActorCritic):
    """OMAR, continuous (paper Eq. 5-8; the official code's independent TD3 + CQL + OMAR).

    Critics of agent i (K = 2, own parameters; x_i = o_i, plus the agent id
    with ``shared_critic``), one Adam step per batch (main optimizer):

        y_i   = r + gamma (1 - d) min_k Qbar_i,k(x'_i, pibar_i(o'_i))
        L_Q   = sum_k E[(Q_i,k(x_i, a_i) - y_i)^2]
                + cql_alpha sum_k E[ T log sum_c exp((Q_i,k(x_i, a_c) - log p(a_c)) / T) - Q_i,k(x_i, a_i) ]

    a_c: C uniform actions (and, with ``cql_policy_samples``, noisy policy
    actions at o and o', the code's HalfCheetah setting). Actor of agent i,
    with the updated critic:

        L_pi  = omar_coe E[(pi_i(o_i) - a*_i)^2] - (1 - omar_coe) E[Q_i,1(x_i, pi_i(o_i))] + action_reg E[pi_i^2]

    a*_i = the search's best action if Q_i,1 of it beats Q_i,1(pi_i(o_i)),
    else pi_i(o_i) (:func:`~lit_omarl.algos.losses.omar_c.omar_target`). The
    search (:func:`~lit_omarl.algos.losses.omar_c.omar_search`) starts at
    N(omar_mu, omar_sigma^2) and runs ``omar_iters`` rounds of
    ``omar_num_samples`` samples: "softmax" refits mu as the softmax(Q)-weighted
    mean (the paper and the code's MPE branch), "cem" keeps the
    ``omar_num_elites`` best (the code's MaMuJoCo branch). ``use_omar=False``
    drops the term: ICQL-C (also registered as "icql_c"). All targets are
    soft-updated after every batch.

    Deviations from the official code (ling-pan/OMAR, also in thu-rllab/CFCQL ``continuous/``):
        - All agents are updated on the same batch in one batched pass; the
          code draws a new batch for each agent in turn.
        - The critics learn the team reward of the dataset (the code reads
          each agent's own reward; in the cooperative tasks they are equal).
          A batch with per-agent reward / terminated [B, L, N] (per-agent
          datasets, ``data.agent_paths``) gives agent i's critic column i;
          only :class:`~lit_omarl.algos.mabcq.DDPGC` declares
          ``accepts_agent_datasets`` (OMAR / ICQL are not offered them).
        - No BatchNorm on the network inputs (the code's ``in_fn``).
        - The search's initial mu / sigma and all noise scales are in units of
          the action half-range (identical for bounds [-1, 1]).
        - Random draws use torch's global generator (seeded and checkpointed
          by the training loop).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        cql_alpha: CQL weight (code default 1; per task, e.g. MPE spread 0.5 /
            1 / 5 / 5, HalfCheetah 1 / 5 / 1 / 5 for random / medium-replay /
            medium / expert).
        cql_n_samples: C sampled actions per source (code 10).
        cql_temperature: T (code ``lse_temp`` 1).
        cql_importance_sampling: subtract the samples' log density (code: on).
        cql_policy_samples: add noisy policy samples at o and o' (code: HalfCheetah).
        cql_sample_noise: std of those samples' noise (code 0.2).
        use_omar: add the OMAR term (False = ICQL).
        omar_coe: weight of the regression term (code default 1; per task,
            e.g. spread 1, tag 0.9 / 0.9 / 0.7 / 0.9, HalfCheetah 1 / 0.9 / 0.7 / 0.5).
        omar_search_mode: "softmax" (code MPE) or "cem" (code HalfCheetah).
        omar_iters: search rounds (code 3 MPE, 2 HalfCheetah).
        omar_num_samples: samples per round (code 10 MPE, 50 HalfCheetah).
        omar_num_elites: elites of "cem" (code 5 HalfCheetah).
        omar_mu, omar_sigma: initial search mean / std (code 0, 2).
        shared_critic: one critic ensemble for all agents (agent id in its input).
        target_noise: std of Gaussian noise on the target actions (code: none).
        action_reg: weight of the squared-action regulariser (code 1e-3).
        **kwargs: :class:`~lit_omarl.algos.continuous_base.ContinuousActorCritic`
            (actor_lr, critic_lr, tau, grad_clip_norm, shared_actor,
            critic_hidden_dim, n_critics, agent, gamma, ...); defaults are the
            code's MPE setting (lr 1e-3 (spread 1e-2), tau 0.01, gamma 0.95,
            hidden 64); HalfCheetah: lr 3e-4, tau 0.005, gamma 0.99, hidden 256.
    """

    def __init__(
        self,
        spec: dict | None = None,
        cql_alpha: float = 1.0,
        cql_n_samples: int = 10,
        cql_temperature: float = 1.0,
        cql_importance_sampling: bool = True,
        cql_policy_samples: bool = False,
        cql_sample_noise: float = 0.2,
        use_omar: bool = True,
        omar_coe: float = 1.0,
        omar_search_mode: Literal["softmax", "cem"] = "softmax",
        omar_iters: int = 3,
        omar_num_samples: int = 10,
        omar_num_elites: int = 5,
        omar_mu: float = 0.0,
        omar_sigma: float = 2.0,
        shared_critic: bool = False,
        target_noise: float = 0.0,
        action_reg: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, **kwargs)
        if omar_search_mode not in ("softmax", "cem"):
            raise ValueError(f"omar_search_mode must be 'softmax' or 'cem', got {omar_search_mode!r}")
        if min(omar_iters, omar_num_samples, omar_num_elites, cql_n_samples) < 1:
            raise ValueError("omar_iters, omar_num_samples, omar_num_elites and cql_n_samples must be >= 1")
        if omar_search_mode == "cem" and not 2 <= omar_num_elites <= omar_num_samples:
            raise ValueError(f"omar_num_elites must be in [2, omar_num_samples={omar_num_samples}] for the 'cem' search "
                             f"(their std refits sigma), got {omar_num_elites}")
        if not 0.0 <= omar_coe <= 1.0:
            raise ValueError(f"omar_coe must be in [0, 1], got {omar_coe}")
        if cql_temperature <= 0:
            raise ValueError(f"cql_temperature must be > 0, got {cql_temperature}")
        s, hp = self.spec, self.hparams
        critic_in = s.obs_dim + (s.n_agents if shared_critic else 0)
        self.critic = AgentCritic(s.n_agents, critic_in, s.n_actions, hp.critic_hidden_dim, hp.n_critics, shared_critic)
        self.target_critic = AgentCritic(s.n_agents, critic_in, s.n_actions, hp.critic_hidden_dim, hp.n_critics, shared_critic)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)

    def critic_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """x_i = o_i (+ agent id one-hot with a shared critic): [..., N, O] -> [..., N, D]."""
        if not self.hparams.shared_critic:
            return obs
        n = obs.shape[-2]
        return torch.cat([obs, torch.eye(n, dtype=obs.dtype, device=obs.device).expand(*obs.shape[:-1], n)], dim=-1)

    def search_targets(self, x: torch.Tensor, pi: torch.Tensor, q_pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """OMAR regression targets [B, L, N, A] for policy actions pi (no gradient) and the share that changed."""
        hp = self.hparams
        mu = torch.full_like(pi, 0.5 * (self.low + self.high) + hp.omar_mu * self.half_range)
        sigma = torch.full_like(pi, hp.omar_sigma * self.half_range)
        noise = torch.randn(hp.omar_iters, *pi.shape[:-1], hp.omar_num_samples, pi.shape[-1], device=pi.device)
        mask = self.action_mask.unsqueeze(-2)  # [N, 1, A]

        def q_fn(a: torch.Tensor) -> torch.Tensor:
            return self.critic(x, a * mask, members=1)[0]  # [B, L, N, C]

        best_a, best_q = omar_search(q_fn, mu, sigma, noise, self.low, self.high, hp.omar_search_mode, hp.omar_num_elites)
        target = omar_target(pi, q_pi, best_a * self.action_mask, best_q)
        return target, (best_q > q_pi).float()

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        mask, actions = batch["mask"], batch["actions"]
        x = self.critic_inputs(batch["obs"])  # [B, L+1, N, D]
        x_now = x[:, :-1]
        with torch.no_grad():
            next_pi, _ = self.policy_outputs(self.target_actor, batch)
            next_pi = smoothed_target_actions(next_pi[:, 1:], hp.target_noise * self.half_range, None, self.low, self.high)
            q_next = self.target_critic(x[:, 1:], next_pi * self.action_mask).min(0).values  # [B, L, N]
            reward, terminated = agent_reward_terminated(batch, self.spec.n_agents)  # [B, L, 1] team or [B, L, N]
            targets = value_targets(reward, terminated, q_next, hp.gamma)
        pi_all, pi_norm_all = self.policy_outputs(self.actor, batch)

        # ---- critics: TD + CQL, independent per agent
        q_data = self.critic(x_now, actions)  # [K, B, L, N]
        td = ensemble_step_mean((q_data - targets).pow(2), mask)
        pi_det = pi_all.detach()
        samples, log_d = cql_action_samples(pi_det[:, :-1], pi_det[:, 1:] if hp.cql_policy_samples else None,
                                            hp.cql_n_samples, self.low, self.high, hp.cql_sample_noise * self.half_range,
                                            self.action_mask)
        q_samples = self.critic(x_now, samples)  # [K, B, L, N, C]
        gap = independent_cql_c_gap(q_samples, q_data, log_d if hp.cql_importance_sampling else None, hp.cql_temperature)
        cql = ensemble_step_mean(gap, mask)
        critic_loss = td + hp.cql_alpha * cql
        self.step_critic(critic_loss, per_agent_clip_net=self.critic)

        # ---- actors: deterministic policy gradient (+ OMAR regression), with the updated critics
        metrics: dict[str, torch.Tensor] = {}
        pi = pi_all[:, :-1]
        with frozen(self.critic):
            q_pi = self.critic(x_now, pi, members=1)[0]  # [B, L, N]
            target = None
            if hp.use_omar:
                with torch.no_grad():
                    target, changed = self.search_targets(x_now, pi.detach(), q_pi.detach())
                metrics["omar_target_changed"] = masked_mean(changed, mask.unsqueeze(-1))
            actor_loss, mimic = omar_actor_loss(pi, target, q_pi, mask, hp.omar_coe)
            actor_loss = actor_loss + hp.action_reg * action_l2(pi_norm_all[:, :-1], mask)
        self.step_actor(actor_loss)
        soft_update(self.target_critic, self.critic, hp.tau)
        soft_update(self.target_actor, self.actor, hp.tau)

        with torch.no_grad():
            m = mask.unsqueeze(-1)
            metrics.update({
                "loss": critic_loss.detach(),
                "td_loss": td.detach(),
                "cql_gap": cql.detach(),
                "q_taken_mean": masked_mean(q_data.detach().min(0).values, m),
                "target_mean": masked_mean(targets, m),
                "actor_loss": actor_loss.detach(),
                "actor_q": masked_mean(q_pi.detach(), m),
            })
            if mimic is not None:
                metrics["omar_mimic"] = mimic.detach()
        self.log_train(metrics)


@register_algorithm("icql_c")
class ICQLC(OMARC):
    """ICQL-C: :class:`OMARC` without the OMAR term (independent CQL actor-critics, TD3-style).

    The "ICQL" baseline of the OMAR and CFCQL papers (cfcql.md Tables 2, 5);
    identical to ``OMARC(use_omar=False)``.

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        use_omar: keep False for ICQL.
        **kwargs: arguments of :class:`OMARC`.
    """

    def __init__(self, spec: dict | None = None, use_omar: bool = False, **kwargs: Any) -> None:
        super().__init__(spec=spec, use_omar=use_omar, **kwargs)
