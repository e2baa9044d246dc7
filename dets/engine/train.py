"""Training entry point behind trainval_net.py and train.py."""

import argparse
import os
import random
import subprocess
import sys
from functools import partial

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from dets.data import MultiScaleCollate, build_dataset, class_box_counts, collate
from dets.models import build_detector, net_spec, prepare_for_training
from dets.plots import plot_training_curves

from .args import train_parser, write_config
from .checkpoint import (
    MODEL_FIELDS,
    RESUME_FIELDS,
    CheckpointError,
    best_checkpoint_path,
    check_finite_state,
    check_save_dir,
    checkpoint_path,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    swa_checkpoint_path,
)
from .distributed import barrier, cleanup, init_distributed, is_main_process
from .model_config import checkpoint_config, training_options
from .progress import MetricsLog, Progress
from .schedule import build_scheduler
from .scopes import freeze_outside, load_scoped
from .test import evaluate
from .trainer import StepGuard, build_optimizer, train_one_epoch

WARMUP_RATIO = 0.2  # the warm-up starts at a fifth of the rate (mmdetection's, the seeds')
# SWA's rate when --swa_lr is not given: a twentieth of the base rate (torch's SWALR examples
# use 0.05; CenterX sets SWA_LR per config).
SWA_LR_RATIO = 0.05
# What test_net.py evaluates with by default.
EVAL_MAX_PER_IMAGE = 100
EVAL_SCORE_THR = 0.01


def _stochastic_weight_averaging(args, model, optimizer, loader, device, lr, iters_per_epoch, train_epoch) -> dict:
    """--swa_epochs more epochs after the main schedule, at SWALR's rate (annealed to --swa_lr,
    default SWA_LR_RATIO × the base rate, over the first of them), the weights averaged after
    each; then the BatchNorm statistics of the average re-estimated on the training data and the
    averaged model saved as ``{prefix}_{session}_swa.pth`` (rank 0), beside the per-epoch
    checkpoints of the same run."""
    swa_model = AveragedModel(model)
    swa_lr = args.swa_lr if args.swa_lr is not None else lr * SWA_LR_RATIO
    swa_scheduler = SWALR(optimizer, swa_lr=swa_lr, anneal_epochs=iters_per_epoch, anneal_strategy="cos")
    stats = {}
    for epoch in range(args.epochs + 1, args.epochs + args.swa_epochs + 1):
        stats, state = train_epoch(epoch, swa_scheduler)
        swa_model.update_parameters(model)
    # update_bn reads the images, the first element of each batch.
    update_bn(loader, swa_model, device=device)
    if is_main_process():
        path = swa_checkpoint_path(args.save_dir, args.net, args.dataset, args.session)
        save_checkpoint(
            path,
            {k: v for k, v in state.items() if k not in ("optimizer", "scheduler")}
            | {"model": swa_model.module.state_dict(), "swa": {"epochs": args.swa_epochs, "lr": swa_lr}},
        )
        print(f"dets: saved the averaged model of epochs {args.epochs + 1}..{epoch} as {path}", flush=True)
    return stats


def _relaunch_under_torchrun() -> None:
    """--mGPUs: run this same command under torchrun, one process per visible GPU."""
    gpus = torch.cuda.device_count()
    if gpus < 1:
        sys.exit("--mGPUs needs at least one visible GPU; for CPU processes run torchrun yourself")
    argv = [a for a in sys.argv if a != "--mGPUs"]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", *argv]
    print("dets: --mGPUs →", " ".join(command), flush=True)
    sys.exit(subprocess.call(command))


class PeriodicEvaluation:
    """``--eval_interval``: the test split evaluated after an epoch, mAP@0.5 (area) logged, and
    the best checkpoint so far kept as ``{prefix}_{session}_best.pth`` (written atomically)."""

    def __init__(self, args, transforms, class_names: list[str], run_dir, device):
        self.args, self.run_dir, self.device = args, run_dir, device
        self.dataset = build_dataset(
            args.dataset, "test", data_dir=args.data_dir, transforms=transforms, classes_file=args.classes
        )
        if list(self.dataset.class_names) != list(class_names):
            sys.exit(f"the test split of {args.dataset} has classes {self.dataset.class_names}, training {class_names}")
        self.best_path = best_checkpoint_path(args.save_dir, args.net, args.dataset, args.session)
        self.best = max(
            (
                r["map50"]
                for r in MetricsLog(run_dir / f"metrics_{args.session}.jsonl").read()
                if r["kind"] == "eval" and r.get("map50") is not None
            ),
            default=-1.0,
        )

    def __call__(self, model, epoch: int, state: dict, metrics: MetricsLog, writer) -> float:
        _, results = evaluate(
            model,
            self.dataset,
            self.device,
            self.args.bs,
            self.args.nw,
            EVAL_MAX_PER_IMAGE,
            EVAL_SCORE_THR,
            self.run_dir / f"detections_{self.args.session}_{epoch}.json",
        )
        map50 = results["voc"]["map_area"]
        metrics.write("eval", epoch=epoch, map50=map50, map50_11point=results["voc"]["map_11point"])
        if writer is not None:
            writer.add_scalar("eval/mAP50", map50, epoch)
        if map50 == map50 and map50 > self.best:
            self.best = map50
            save_checkpoint(self.best_path, state | {"map50": map50})
            print(f"dets: best mAP@0.5 so far ({100 * map50:.1f}): saved {self.best_path}", flush=True)
        return map50


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def main(args) -> dict:
    if args.mGPUs and "WORLD_SIZE" not in os.environ:
        _relaunch_under_torchrun()
    if args.cuda and not torch.cuda.is_available():
        sys.exit("--cuda given but no GPU is visible")
    if args.resume_scope and not args.resume:
        sys.exit("--resume_scope names what to load from the checkpoint of --r; give --r and the --check* flags")
    device_type = "cuda" if args.cuda else "cpu"
    rank, world_size, local_rank = init_distributed(device_type)
    device = torch.device("cuda", local_rank) if args.cuda else torch.device("cpu")
    seed_everything(args.seed + rank)
    recipe = net_spec(args.net).recipe
    lr = args.lr if args.lr is not None else recipe.default_lr(args.optimizer, args.bs)
    weight_decay = args.wd if args.wd is not None else recipe.weight_decay
    input_size = args.input_size or recipe.input_size
    augmentation = args.aug or recipe.augmentation
    if args.multiscale:
        # The transforms resize to the largest size; each batch shrinks to one of the sizes.
        input_size = args.input_size = max(args.multiscale)
    frozen_stages, frozen_bn = recipe.freezing(args.pretrained)
    if args.frozen_stages is not None:
        frozen_stages = args.frozen_stages
    decay = args.lr_decay_step
    if decay is None:
        # The seeds' 1x schedule (decay after epochs 9 and 11 of 12), scaled to --epochs.
        decay = sorted({e for e in (round(args.epochs * 3 / 4), round(args.epochs * 11 / 12)) if 1 <= e < args.epochs})

    if is_main_process():
        # Before anything is trained: an unusable folder fails now, not after the first epoch.
        try:
            run_dir = check_save_dir(checkpoint_path(args.save_dir, args.net, args.dataset, args.session, 1, 1).parent)
        except OSError as exc:
            sys.exit(f"dets: --save_dir {args.save_dir} cannot hold checkpoints: {exc}")
        for stale in remove_stale_temporaries(run_dir):
            print(f"dets: removed {stale}, left by a run that was killed while writing it")
        build_dataset(args.dataset, "train", data_dir=args.data_dir, classes_file=args.classes)  # makes `shapes` once
    barrier()
    dataset = build_dataset(
        args.dataset,
        "train",
        data_dir=args.data_dir,
        transforms=recipe.train_transforms(input_size, augmentation == "ssd"),
        classes_file=args.classes,
    )
    class_names = list(dataset.class_names)
    if is_main_process():
        print("dets: boxes per class: " + ", ".join(f"{n} {c}" for n, c in class_box_counts(dataset).items()))
    resume_path = state = None
    # --resume_scope fine-tunes from the checkpoint's weights only: its optimizer is not needed.
    fine_tune = bool(args.resume_scope)
    if args.resume:
        resume_path = checkpoint_path(
            args.load_dir or args.save_dir, args.net, args.dataset, args.checksession, args.checkepoch, args.checkpoint
        )
        state = load_checkpoint(resume_path, required=MODEL_FIELDS if fine_tune else RESUME_FIELDS)
        if fine_tune and args.session == args.checksession and (args.load_dir or args.save_dir) == args.save_dir:
            # Its epochs restart from --start_epoch: they would overwrite the checkpoint fine-tuned from.
            sys.exit(f"dets: fine-tuning from {resume_path} with --resume_scope: give another --s than its session")
    if state is not None and not fine_tune and args.trainable_scope is None:
        # The optimizer state being resumed holds exactly the scopes the checkpoint trained.
        args.trainable_scope = state.get("args", {}).get("trainable_scope")
    options = training_options(args, None if state is None else checkpoint_config(state, resume_path))
    model = prepare_for_training(
        build_detector(
            args.net,
            len(class_names),
            pretrained=args.pretrained,
            frozen_stages=frozen_stages,
            frozen_bn=frozen_bn,
            options=options,
        ),
        device,
        channels_last=args.channels_last,
    )
    if state is not None and fine_tune:
        try:
            loaded = load_scoped(model, state["model"], args.resume_scope, resume_path)
        except ValueError as exc:
            sys.exit(f"dets: {exc}")
        if is_main_process():
            print(
                f"dets: fine-tuning from {resume_path}: loaded {len(loaded)} of {len(model.state_dict())} tensors "
                f"({','.join(args.resume_scope)}); the rest as initialised"
                + ("" if state["class_names"] == class_names else f" (it was trained on {state['class_names']})")
            )
    if args.trainable_scope:
        try:
            frozen = freeze_outside(model, args.trainable_scope)
        except ValueError as exc:
            sys.exit(f"dets: {exc}")
        if is_main_process():
            trainable = sum(p.requires_grad for p in model.parameters())
            print(
                f"dets: --trainable_scope {','.join(args.trainable_scope)}: {trainable} parameter tensors train, "
                f"{len(frozen)} more frozen"
            )

    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator())
    loader = DataLoader(
        dataset,
        batch_size=args.bs,
        sampler=sampler,
        num_workers=args.nw,
        collate_fn=(
            MultiScaleCollate(args.multiscale, args.seed, model.size_divisor)
            if args.multiscale
            else partial(collate, size_divisor=model.size_divisor)
        ),
        drop_last=len(dataset) >= args.bs,
        persistent_workers=False,
        generator=torch.Generator(),
        pin_memory=args.cuda,
    )
    iters_per_epoch = min(len(loader), args.max_iters or len(loader))

    optimizer = build_optimizer(model, args.optimizer, lr, weight_decay)
    if args.lr_schedule == "cosine":
        shape = {"epochs": args.epochs, "flat_epochs": args.cosine_flat_epochs, "min_ratio": args.min_lr_ratio}
    else:
        shape = {"decay_epochs": decay, "gamma": args.lr_decay_gamma}
    scheduler = build_scheduler(
        optimizer,
        args.lr_schedule,
        iters_per_epoch=iters_per_epoch,
        warmup_iters=args.warmup_iters,
        warmup_ratio=WARMUP_RATIO,
        **shape,
    )
    start_epoch = args.start_epoch
    if state is not None and not fine_tune:
        path = resume_path
        if state.get("class_names") != class_names:
            sys.exit(f"{path} was trained on classes {state.get('class_names')}, this dataset has {class_names}")
        model.load_state_dict(state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:
            sys.exit(
                f"dets: {path}'s optimizer does not fit this run's trainable parameters ({exc}); resume with the "
                "--trainable_scope it was trained with, or fine-tune from it with --resume_scope"
            )
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = state["epoch"] + 1
        if "rng" in state:
            torch.set_rng_state(state["rng"]["torch"])
        if is_main_process():
            print(f"dets: resumed from {path} (epoch {state['epoch']}); continuing at epoch {start_epoch}")

    ddp_model = DistributedDataParallel(model) if world_size > 1 else model
    amp_dtype = None
    scaler = None
    if args.amp:
        amp_dtype = torch.float16 if args.cuda else torch.bfloat16
        scaler = torch.amp.GradScaler("cuda") if args.cuda else None
    writer = None
    if args.use_tfb and is_main_process():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=os.path.join("logs", args.net, f"session{args.session}"))

    run_dir = checkpoint_path(args.save_dir, args.net, args.dataset, args.session, 1, 1).parent
    effective = argparse.Namespace(
        **vars(args)
        | options
        | {
            "lr": lr,
            "wd": weight_decay,
            "input_size": input_size,
            "aug": augmentation,
            "lr_decay_step": decay,
            "frozen_stages": frozen_stages,
        }
    )
    metrics = evaluator = None
    if is_main_process():
        print(
            f"dets: training {args.net} on {args.dataset} ({len(dataset)} images, {len(class_names)} classes) "
            f"on {device} x{world_size}, epochs {start_epoch}..{args.epochs}, lr {lr}, decay at {decay}"
        )
        config_file = write_config(effective, run_dir / f"config_{args.session}.yml")
        print(f"dets: effective configuration (repeat the run with --cfg {config_file}):")
        print(config_file.read_text().rstrip(), flush=True)
        metrics = MetricsLog(run_dir / f"metrics_{args.session}.jsonl")
        if args.eval_interval:
            evaluator = PeriodicEvaluation(args, recipe.test_transforms(input_size), class_names, run_dir, device)

    def on_log(record: dict) -> None:
        metrics.write("iter", **record)
        if writer is not None:
            for key in (k for k in record if k.startswith("loss") or k == "lr"):
                writer.add_scalar(f"train/{key}", record[key], record["step"])

    if start_epoch > args.epochs:
        sys.exit(
            f"dets: nothing to train: the first epoch would be {start_epoch} but --epochs is {args.epochs}"
            + (f" ({resume_path} already finished epoch {start_epoch - 1})" if state is not None else "")
            + "; raise --epochs to train further"
        )
    guard = StepGuard(skip_loss_ratio=args.skip_loss_ratio)
    final_epoch = args.epochs + args.swa_epochs

    def train_epoch(epoch: int, scheduler) -> tuple[dict, dict | None]:
        """One epoch and its checkpoint (and evaluation, curves): (stats, checkpoint state)."""
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(args.seed * 1000 + epoch)
        loader.generator.manual_seed(args.seed * 1000 + epoch + 7)
        progress = Progress(iters_per_epoch, f"epoch {epoch}/{final_epoch}", args.disp_interval, is_main_process())
        stats = train_one_epoch(
            ddp_model,
            loader,
            optimizer,
            scheduler,
            device,
            epoch,
            scaler=scaler,
            amp_dtype=amp_dtype,
            clip_grad=args.clip_grad,
            disp_interval=args.disp_interval,
            on_log=on_log if is_main_process() else None,
            progress=progress,
            max_iters=args.max_iters,
            guard=guard,
        )
        progress.close()
        state = None
        if is_main_process():
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in stats.items()), flush=True)
            metrics.write("epoch", epoch=epoch, **stats)
            path = checkpoint_path(args.save_dir, args.net, args.dataset, args.session, epoch, iters_per_epoch)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "step": iters_per_epoch,
                "args": vars(effective),
                "config": model.config(),
                "class_names": class_names,
                "net": args.net,
                "rng": {"torch": torch.get_rng_state()},
            }
            try:
                check_finite_state(state["model"], f"the model after epoch {epoch}")
            except CheckpointError as exc:
                sys.exit(f"dets: {exc}; no checkpoint written for it (lower --lr or raise --warmup_iters)")
            save_checkpoint(path, state)
            print(f"dets: saved {path}", flush=True)
            if evaluator is not None and (epoch % args.eval_interval == 0 or epoch == final_epoch):
                evaluator(model, epoch, state, metrics, writer)
            print(f"dets: curves in {plot_training_curves(metrics.read(), run_dir / f'curves_{args.session}.png')}")
        # Evaluation runs on rank 0 only; the other ranks wait for it here.
        barrier()
        return stats, state

    last = {}
    for epoch in range(start_epoch, args.epochs + 1):
        last, _ = train_epoch(epoch, scheduler)
    if args.swa_epochs:
        last = _stochastic_weight_averaging(args, model, optimizer, loader, device, lr, iters_per_epoch, train_epoch)
    if writer is not None:
        writer.close()
    cleanup()
    return last


def cli(argv=None) -> None:
    try:
        main(train_parser().parse_args(argv))
    except KeyboardInterrupt as exc:
        sys.exit(f"dets: {exc or 'interrupted'}")
