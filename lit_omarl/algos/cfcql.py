"""CFCQL-D: Counterfactual Conservative Q-Learning, discrete actions (Shao et al., NeurIPS 2023).

QMIX value decomposition trained offline with a counterfactual CQL regulariser:
each agent's actions are pushed down one agent at a time, the other agents
keeping their dataset actions, and the N per-agent penalties are averaged with
weights lambda_i that favour the agents whose (Boltzmann) policy strays
furthest from the behaviour policy.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_omarl.algos.base import Batch, ConservativeQMIX, behaviour_probs, register_algorithm
from lit_omarl.algos.losses import (
    cfcql_counterfactual_reduce,
    cfcql_gap,
    counterfactual_lambda,
    cql_counterfactual_term,
    masked_mean,
)


@register_algorithm("cfcql")
class CFCQL(ConservativeQMIX):
    """CFCQL-D (paper Algorithm 1, discrete branch).

    Loss (paper Eq. 7), minimised over the agent network and the QMIX mixer:

        alpha * E_s[ sum_i lambda_i log sum_{j} exp Q_tot(s, j, a_data^{-i}) - Q_tot(s, a_data) ]
          + E[ 0.5 * (Q_tot(s, a_data) - G_t)^2 ]

    where j runs over agent i's available actions, a_data^{-i} are the other
    agents' dataset actions and G_t the double-Q TD(lambda) target of the
    target networks. All N * A counterfactual joint actions of a state are
    mixed in one batched call reusing the mixer's hypernetwork outputs; with
    the QMIX mixer, one fused pass (``QMixer.counterfactual_reduce``) mixes
    them, reduces them to sum_i lambda_i neg_i and contracts its gradient
    while the hidden layer is in cache, on the valid steps only.

    Agent weights (paper Eq. 8, 9, B.40, B.41):

        mu_i(j)  = softmax_j Q_tot(s, j, a_data^{-i})                      (B.40)
        lambda_i = softmax_i( +softmax_temp * KL(mu_i || beta_i) )          (Eq. 9, with the KL of B.41)

    beta_i is a behaviour-cloning policy (same agent architecture with policy
    logits, masked-softmax NLL, Adam) pre-trained before the main loop. The
    sign is POSITIVE as in Eq. 9 and the official code; Eq. B.41 prints a
    minus sign, which we treat as a typo. lambda is detached (as in the
    official code): the weights shape the penalty but receive no gradient. softmax_temp 0 gives lambda = 1/N
    (no behaviour model is trained); ``lambda_mode="onehot"`` is Eq. 8 (the
    official code's ``softmax_temp=100``); ``"uniform"`` forces 1/N.

    Deviations from the official code (thu-rllab/CFCQL, discrete):
        - Behaviour pre-training runs at most ``behaviour_pretrain_steps``
          updates with the official early stop (``behaviour_patience`` updates
          without a new minimum loss; 0 disables it) and is skipped when a
          checkpoint says it is done, instead of a cached model folder.
        - The behaviour model uses the Q-network's agent type (GRU by default,
          as the code); the paper's appendix mentions a 3-layer MLP.
        - The loss is one vectorised pass over agents x actions instead of a
          Python loop over both; the values are the same (up to float rounding).
        - TD(lambda) targets bootstrap a truncated episode shorter than the
          batch from its own last observation (see ``td_lambda_targets``).
        - Evaluation is greedy over available actions (the code's test mode).

    Args:
        spec: the dataset's EnvSpec as a dict (linked from ``data.spec``).
        cql_alpha: weight alpha of the counterfactual regulariser (official
            default 50; its README tunes it per map and dataset, e.g. 2s3z
            medium 0.1).
        softmax_temp: temperature tau of the lambda softmax (official default
            5; README per dataset, e.g. 2s3z medium 0.5; 0 = uniform weights).
        lambda_mode: "softmax" (Eq. 9), "onehot" (Eq. 8) or "uniform" (1/N).
        behaviour_pretrain_steps: maximum updates of behaviour pre-training
            (one ``datamodule.sample()`` batch each).
        behaviour_patience: stop pre-training after this many updates without
            a new minimum NLL (official rule: 20); 0 = run all steps.
        behaviour_lr: Adam learning rate of the behaviour model.
        behaviour_cache_mb: when batches carry the dataset index of each
            episode (key ``episode``, long [B]), the behaviour probabilities of
            an episode are computed once and reused while the behaviour model
            is unchanged (it is frozen after pre-training): at most this many
            MB are kept (about 0.13 GB per 5,000 SMAC 2s3z episodes); 0 = no
            cache. Without the key beta is computed every update. Same values.
        **kwargs: arguments of :class:`ConservativeQMIX` (lr, td_lambda,
            target_update_interval, mixer, ...) and of
            :class:`OfflineMARLModule` (gamma, agent, eval settings, seed, ...).
    """

    def __init__(
        self,
        spec: dict | None = None,
        cql_alpha: float = 50.0,
        softmax_temp: float = 5.0,
        lambda_mode: Literal["softmax", "onehot", "uniform"] = "softmax",
        behaviour_pretrain_steps: int = 5000,
        behaviour_patience: int = 20,
        behaviour_lr: float = 1e-3,
        behaviour_cache_mb: float = 512.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec=spec, cql_alpha=cql_alpha, **kwargs)
        if lambda_mode not in ("softmax", "onehot", "uniform"):
            raise ValueError(f"lambda_mode must be 'softmax', 'onehot' or 'uniform', got {lambda_mode!r}")
        if softmax_temp < 0:
            raise ValueError(f"softmax_temp must be >= 0, got {softmax_temp}")
        needs_beta = lambda_mode == "onehot" or (lambda_mode == "softmax" and softmax_temp > 0)
        self.behaviour = self.make_agent_net(self.spec.n_actions) if needs_beta else None
        # beta of dataset episodes by index (batches with an "episode" key), for the frozen behaviour model
        self._beta_cache: dict[int, torch.Tensor] = {}
        self._beta_cache_key: tuple | None = None
        self._beta_cache_bytes = 0

    # ---- optimisers and behaviour model --------------------------------------
    def configure_optimizers(self) -> Any:
        main = super().configure_optimizers()
        if self.behaviour is None:
            return main
        return [main, torch.optim.Adam(self.behaviour.parameters(), lr=self.hparams.behaviour_lr)]

    def behaviour_pretrain_budget(self) -> tuple[int, int]:
        if self.behaviour is None:
            return 0, 0
        return self.hparams.behaviour_pretrain_steps, self.hparams.behaviour_patience

    def behaviour_update(self, batch: Batch) -> torch.Tensor:
        loss = self.policy_nll(self.behaviour, batch)  # secondary optimizer 1: not a global step
        self.step_optimizer(1, loss, self.behaviour.parameters(), self.hparams.grad_clip_norm)
        return loss.detach()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._beta_cache, self._beta_cache_key, self._beta_cache_bytes = {}, None, 0  # indices of another dataset?

    # ---- the counterfactual regulariser --------------------------------------
    def conservative_gap(
        self, q_all: torch.Tensor, batch: Batch, avail: torch.Tensor, q_taken_tot: torch.Tensor, mixer_params: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = batch["mask"]
        beta = None
        if self.behaviour is not None:
            beta = self._behaviour_probs(batch, avail)
        fused = self._fused_gap(q_all, batch["actions"], avail, beta, mask, mixer_params)
        if fused is not None:
            weighted, neg, lam, ratio = fused
            gap = weighted - q_taken_tot
        else:
            # neg_i = logsumexp_j Q_tot(s, j, a^{-i}), all N * A candidates in one mixer call.
            neg, cand_qtot = cql_counterfactual_term(q_all, batch["actions"], avail, mixer_params, self.mixer.mix)
            if beta is None:
                lam, ratio = torch.full_like(neg, 1.0 / neg.shape[-1]), None
            else:
                lam, ratio = counterfactual_lambda(cand_qtot, beta, avail, self.hparams.softmax_temp, self.hparams.lambda_mode)
            gap = cfcql_gap(neg, lam, q_taken_tot)
        extra: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if beta is not None:
                extra["lambda_kl_mean"] = masked_mean(ratio.mean(-1), mask)
            extra["cql_neg_mean"] = masked_mean((lam * neg).sum(-1), mask)
            extra["lambda_max_mean"] = masked_mean(lam.max(-1).values, mask)
        return gap, extra

    def _fused_gap(self, q_all, actions, avail, beta, mask, mixer_params) -> tuple[torch.Tensor, ...] | None:
        """(sum_i lambda_i neg_i, neg, lambda, ratio) [B, L(, N)] by the mixer's fused kernel, computed on the
        valid steps only, or None when the mixer has no such kernel (then the composable path runs)."""
        reduce_fn = getattr(self.mixer, "counterfactual_reduce", None)
        if reduce_fn is None or not getattr(self.mixer, "fused_candidates", False):
            return None
        n, a = q_all.shape[-2:]
        valid = mask.reshape(-1) > 0
        rows = None if bool(valid.all()) else valid.nonzero().squeeze(1)
        pick = (lambda x: x.reshape(-1, n, a)) if rows is None else (lambda x: x.reshape(-1, n, a).index_select(0, rows))
        reduce = cfcql_counterfactual_reduce(
            pick(avail), None if beta is None else pick(beta), self.hparams.softmax_temp, self.hparams.lambda_mode
        )
        q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return reduce_fn(q_all, q_taken, mixer_params, reduce, rows=rows)

    @torch.no_grad()
    def _behaviour_probs(self, batch: Batch, avail: torch.Tensor) -> torch.Tensor:
        """beta [B, L, N, A] of the batch; reused per dataset episode when the batch says which ones."""
        # steps 0..L-1 of the cached [B, L+1] agent inputs (a view: no copy)
        inputs = self.sequence_inputs(batch, include_last_obs=True)[:, : avail.shape[1]]
        episodes = batch.get("episode")
        budget = self.hparams.behaviour_cache_mb * 2**20
        if episodes is None or budget <= 0:
            return behaviour_probs(self.behaviour, inputs, avail)
        key = tuple(p._version for p in self.behaviour.parameters())  # any in-place update changes it
        if key != self._beta_cache_key:
            self._beta_cache, self._beta_cache_key, self._beta_cache_bytes = {}, key, 0
        cache, ids = self._beta_cache, episodes.tolist()
        lengths = batch["mask"].sum(1).long().tolist()  # beta is causal: the valid prefix is what counts
        miss = [k for k, e in enumerate(ids) if e not in cache or cache[e].shape[0] < lengths[k]]
        fresh = None
        if miss:
            rows = torch.tensor(miss, device=avail.device)
            fresh = behaviour_probs(self.behaviour, inputs.index_select(0, rows), avail.index_select(0, rows))
            for m, k in enumerate(miss):
                if self._beta_cache_bytes < budget:
                    old = cache.get(ids[k])
                    self._beta_cache_bytes += fresh[m].nbytes - (0 if old is None else old.nbytes)
                    cache[ids[k]] = fresh[m].clone()
        beta = avail.new_zeros(avail.shape, dtype=inputs.dtype)  # steps past an episode's end stay 0 (masked)
        if fresh is not None:
            beta[rows] = fresh
        missed = set(miss)
        for k, e in enumerate(ids):
            if k not in missed:
                steps = min(beta.shape[1], cache[e].shape[0])
                beta[k, :steps] = cache[e][:steps]
        return beta
