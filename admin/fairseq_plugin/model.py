"""The ``admin_transformer`` model family and its architecture presets.

It is fairseq's ``transformer`` with one extra choice, ``--init-type``, that
selects the residual variant (see :mod:`fairseq_plugin.layers <admin/fairseq_plugin/layers.py>`):

``default``             fairseq's own layers, Post-LN or (with ``--*-normalize-before``) Pre-LN
``adaptive-profiling``  Admin's profiling run: one batch, writes ``--admin-profile``, exits 0
``adaptive``            Admin, initialised from ``--admin-profile``
``admin-logn``          closed-form Admin: omega = sqrt((N+1)/ln(N+1) - 1)
``deepnet``             DeepNorm (Wang et al. 2022)
``rezero``              ReZero (Bachlechner et al. 2020)

and ``--param-init paper``, the paper's initialisation where fairseq 0.12's
differs from its fairseq 0.9 (:func:`~fairseq_plugin.layers.init_paper_params`:
Xavier-uniform feed-forward weights, zero feed-forward and q/k/v biases; 0.12
keeps torch's ``nn.Linear`` default there, which gives the feed-forward branch
about 1/6 of the output variance at width 512, FFN 2048).
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from fairseq import utils
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import (
    TransformerDecoderBase,
    TransformerEncoderBase,
    TransformerModel,
)
from fairseq.models.transformer.transformer_legacy import (
    base_architecture,
    transformer_iwslt_de_en,
    transformer_wmt_en_de,
    transformer_wmt_en_de_big,
)

from admin.common import profiling
from admin.common.fairseq_args import precision
from admin.common.variants import INIT_TYPES, admin_logn_omega, deepnorm_constants

from .layers import (
    PARAM_INITS,
    AdminDecoderLayer,
    AdminEncoderLayer,
    init_deepnet_weights,
    init_paper_params,
)

logger = logging.getLogger(__name__)


class ProfilingFinished(SystemExit):
    """Ends ``fairseq-train`` with status 0 once the profile is on disk.

    Raised from ``build_model``, before any training step, checkpoint load or
    data-loading thread: the run stops there and saves nothing.
    """

    def __init__(self, path: str, profile: profiling.Profile):
        super().__init__(0)
        self.path = path
        self.profile = profile


@dataclass
class _StackPlan:
    init_type: str
    omegas: list[float] = field(default_factory=list)  # one per sublayer
    deepnet_beta: float | None = None


# The plan of the model being built: fairseq's build_model() passes only its
# TransformerConfig (which has no --init-type) down to build_encoder/decoder.
_PLAN: contextvars.ContextVar[dict[str, _StackPlan]] = contextvars.ContextVar("admin_plan")


@register_model("admin_transformer")
class AdminTransformerModel(TransformerModel):
    @classmethod
    def add_args(cls, parser: Any) -> None:
        super().add_args(parser)
        parser.add_argument(
            "--init-type",
            choices=INIT_TYPES,
            help="residual variant and its initialisation (default: fairseq's transformer)",
        )
        parser.add_argument(
            "--admin-profile",
            metavar="PATH",
            help="Admin profile: written by adaptive-profiling, read by adaptive",
        )
        parser.add_argument(
            "--param-init",
            choices=PARAM_INITS,
            help="initialisation: fairseq's (0.12) or paper (its fairseq 0.9: Xavier-uniform "
            "feed-forward weights, zero feed-forward and q/k/v biases); deepnet keeps its own",
        )

    @classmethod
    def build_model(cls, args: Any, task: Any) -> AdminTransformerModel:
        admin_base_architecture(args)
        plan = _plan_from_args(args)
        token = _PLAN.set(plan)
        try:
            model = super().build_model(args, task)
        finally:
            _PLAN.reset(token)
        model.init_type = args.init_type
        model.admin_profile = args.admin_profile
        # Before profiling: the profile measures the model that will be trained.
        if args.param_init == "paper" and args.init_type != "deepnet":  # DeepNet sets its own
            for layer in (*model.encoder.layers, *model.decoder.layers):
                init_paper_params(layer)
        if args.init_type == "adaptive-profiling":
            _profile_and_exit(model, args, task)
        return model

    @classmethod
    def build_encoder(cls, cfg: Any, src_dict: Any, embed_tokens: Any) -> TransformerEncoderBase:
        plan = _PLAN.get()["encoder"]
        if plan.init_type == "default":
            return super().build_encoder(cfg, src_dict, embed_tokens)
        return AdminTransformerEncoder(plan, cfg, src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, cfg: Any, tgt_dict: Any, embed_tokens: Any) -> TransformerDecoderBase:
        plan = _PLAN.get()["decoder"]
        if plan.init_type == "default":
            return super().build_decoder(cfg, tgt_dict, embed_tokens)
        return AdminTransformerDecoder(plan, cfg, tgt_dict, embed_tokens)

    def profile(self, src_tokens, src_lengths, prev_output_tokens, **kwargs) -> profiling.Profile:
        """Admin's profiling forward pass on one batch (training mode).

        Every omega is set to its stack's running value just before it is
        used, and the values are returned as a profile.
        """
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise profiling.ProfileError(
                "Admin profiling runs in one process; this run has "
                f"{dist.get_world_size()} (use --distributed-world-size 1 and one device)"
            )
        recorders = {"encoder": profiling.RunningVariance(), "decoder": profiling.RunningVariance()}
        for name, recorder in recorders.items():
            for layer in getattr(self, name).layers:
                layer.recorder = recorder
        try:
            super().forward(src_tokens, src_lengths, prev_output_tokens, **kwargs)
        finally:
            for name in recorders:
                for layer in getattr(self, name).layers:
                    layer.recorder = None
        return profiling.Profile(
            encoder=_stack_profile(self.encoder, recorders["encoder"]),
            decoder=_stack_profile(self.decoder, recorders["decoder"]),
            meta={
                "sentences": int(src_tokens.size(0)),
                "source_tokens": int(src_lengths.sum().item()),
                "dtype": str(self.encoder.layers[0].omega.dtype),
            },
        )


class AdminTransformerEncoder(TransformerEncoderBase):
    def __init__(self, plan: _StackPlan, cfg: Any, dictionary: Any, embed_tokens: Any):
        self.plan = plan  # read by build_encoder_layer during super().__init__
        super().__init__(cfg, dictionary, embed_tokens)
        _apply_plan(self.layers, plan)

    def build_encoder_layer(self, cfg: Any) -> AdminEncoderLayer:
        return AdminEncoderLayer(cfg, self.plan.init_type)


class AdminTransformerDecoder(TransformerDecoderBase):
    def __init__(self, plan: _StackPlan, cfg: Any, dictionary: Any, embed_tokens: Any):
        self.plan = plan
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=cfg.no_cross_attention)
        _apply_plan(self.layers, plan)

    def build_decoder_layer(self, cfg: Any, no_encoder_attn: bool = False) -> AdminDecoderLayer:
        return AdminDecoderLayer(cfg, self.plan.init_type, no_encoder_attn=no_encoder_attn)


def _apply_plan(layers: Any, plan: _StackPlan) -> None:
    if plan.omegas:
        per_layer = layers[0].n_sublayers
        for index, layer in enumerate(layers):
            layer.set_omegas(plan.omegas[index * per_layer : (index + 1) * per_layer])
    if plan.deepnet_beta is not None:
        for layer in layers:
            init_deepnet_weights(layer, plan.deepnet_beta)


def _plan_from_args(args: Any) -> dict[str, _StackPlan]:
    """Validate the flags and work out each stack's residual initialisation."""
    init_type = args.init_type
    enc_layers, dec_layers = args.encoder_layers, args.decoder_layers
    plans = {"encoder": _StackPlan(init_type), "decoder": _StackPlan(init_type)}
    if init_type == "default":
        return plans
    if args.encoder_normalize_before or args.decoder_normalize_before:
        raise ValueError(
            f"--init-type {init_type} is a Post-LN method: drop --encoder-normalize-before "
            "and --decoder-normalize-before (Pre-LN is --init-type default with them)"
        )
    if init_type.startswith("adaptive") and not args.admin_profile:
        raise ValueError(f"--init-type {init_type} requires --admin-profile PATH")
    if init_type == "adaptive-profiling":
        world = int(getattr(args, "distributed_world_size", 1) or 1)
        if world > 1:
            raise profiling.ProfileError(
                f"Admin profiling runs in one process, but --distributed-world-size is {world}: "
                "profile on one device (e.g. CUDA_VISIBLE_DEVICES=0 --distributed-world-size 1)"
            )
    elif init_type == "adaptive":
        profile = profiling.read_profile(args.admin_profile)
        profiling.check_fits(
            args.admin_profile,
            profile,
            encoder_layers=enc_layers,
            encoder_embed_dim=args.encoder_embed_dim,
            decoder_layers=dec_layers,
            decoder_embed_dim=args.decoder_embed_dim,
        )
        plans["encoder"].omegas = profile.encoder.omegas
        plans["decoder"].omegas = profile.decoder.omegas
        logger.info("admin: initialised omegas from profile %s", args.admin_profile)
    elif init_type == "admin-logn":
        for name, layers, per_layer in (("encoder", enc_layers, 2), ("decoder", dec_layers, 3)):
            n = layers * per_layer
            plans[name].omegas = [admin_logn_omega(n)] * n
    elif init_type == "deepnet":
        c = deepnorm_constants(enc_layers, dec_layers)
        plans["encoder"].omegas = [c.encoder_alpha] * (2 * enc_layers)
        plans["decoder"].omegas = [c.decoder_alpha] * (3 * dec_layers)
        plans["encoder"].deepnet_beta = c.encoder_beta
        plans["decoder"].deepnet_beta = c.decoder_beta
    return plans


def _profile_and_exit(model: AdminTransformerModel, args: Any, task: Any) -> None:
    """The profiling run: profile the first training batch, write, exit 0.

    This runs inside ``build_model``, before fairseq loads a checkpoint or
    starts its data-loading threads, so the process ends cleanly and nothing
    else (checkpoint, optimizer state) is ever written.
    """
    batch = first_training_batch(args, task, model)
    use_cuda = torch.cuda.is_available() and not getattr(args, "cpu", False)
    if use_cuda:
        model.cuda()
        batch = utils.move_to_cuda(batch)
    wanted = precision(vars(args))
    dtype = profiling_dtype(wanted, use_cuda)
    if dtype != torch.float32:
        # as fairseq's trainer casts the model under --fp16/--bf16: the profile measures the
        # forward pass the first update will run (Transformer-Clinic profiles under --fp16)
        model.to(dtype)
    elif wanted != "fp32":
        logger.info("admin: profiling in fp32: the run asks for %s, which needs a GPU", wanted)
    model.train()
    result = model.profile(**batch["net_input"])
    profiling.write_profile(args.admin_profile, result)
    logger.info(
        "admin: wrote profile %s (encoder omegas %s, decoder omegas %s); profiling done",
        args.admin_profile,
        _fmt(result.encoder.omegas),
        _fmt(result.decoder.omegas),
    )
    raise ProfilingFinished(args.admin_profile, result)


def profiling_dtype(wanted: str, use_cuda: bool) -> torch.dtype:
    """The dtype Admin's profiling forward runs in: the run's precision on a GPU, fp32 on
    the CPU (fairseq trains in fp16 and bf16 on GPUs only; the CPU steps drop both)."""
    if not use_cuda:
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(wanted, torch.float32)


def first_training_batch(args: Any, task: Any, model: Any) -> dict:
    """The first batch fairseq-train would train on (epoch 1, same seed and batching),
    built in this thread: no loader workers, no background buffer."""
    task.load_dataset(args.train_subset, epoch=1, combine=True)
    itr = task.get_batch_iterator(
        dataset=task.dataset(args.train_subset),
        max_tokens=args.max_tokens,
        max_sentences=args.batch_size,
        max_positions=utils.resolve_max_positions(
            task.max_positions(), model.max_positions(), args.max_tokens
        ),
        ignore_invalid_inputs=True,
        required_batch_size_multiple=args.required_batch_size_multiple,
        seed=args.seed,
        num_shards=1,
        shard_id=0,
        num_workers=0,
        epoch=1,
        data_buffer_size=0,
        grouped_shuffling=getattr(args, "grouped_shuffling", False),
    )
    return next(iter(itr.next_epoch_itr(shuffle=True)))


def _stack_profile(stack: Any, recorder: profiling.RunningVariance) -> profiling.StackProfile:
    return profiling.StackProfile(
        layers=len(stack.layers),
        embed_dim=int(stack.layers[0].omega.size(-1)),
        omegas=list(recorder.omegas),
    )


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


# Architecture presets: fairseq's, plus the --init-type default.


@register_model_architecture("admin_transformer", "admin_transformer")
def admin_base_architecture(args: Any) -> None:
    args.init_type = getattr(args, "init_type", None) or "default"
    args.admin_profile = getattr(args, "admin_profile", None)
    args.param_init = getattr(args, "param_init", None) or "fairseq"
    base_architecture(args)


@register_model_architecture("admin_transformer", "admin_transformer_iwslt_de_en")
def admin_transformer_iwslt_de_en(args: Any) -> None:
    transformer_iwslt_de_en(args)
    admin_base_architecture(args)


@register_model_architecture("admin_transformer", "admin_transformer_wmt_en_de")
def admin_transformer_wmt_en_de(args: Any) -> None:
    transformer_wmt_en_de(args)
    admin_base_architecture(args)


@register_model_architecture("admin_transformer", "admin_transformer_wmt_en_de_big")
def admin_transformer_wmt_en_de_big(args: Any) -> None:
    transformer_wmt_en_de_big(args)
    admin_base_architecture(args)


__all__ = ["AdminTransformerModel", "ProfilingFinished"]
