"""``make gpu-check``: what only a machine with CUDA GPUs can check, as one script ending in ``gpu-check: ok``.

(a) pre-trains `tiny` for 30 steps with ``deepspeed --num_gpus N`` over NCCL, bf16 and ZeRO-2; kills a second
    run once its step-10 checkpoint is complete, resumes it, and compares the resumed losses with the
    uninterrupted ones;
(b) fine-tunes each of the four heads for one short epoch under ``accelerate launch`` on all GPUs, then runs
    ``--eval-only`` on the best checkpoint;
(c) prints the achieved bf16 TFLOP/s and MFU of a paper-size pre-training step (FLOPs counted by torch's
    FlopCounterMode; peak from a bf16 matmul measured here and from the device's datasheet);
(d) prints the loader's samples/s per worker beside the samples/s the paper-size model consumes per GPU, and the
    end-to-end step rate (real loader, text encoder, model) as a fraction of the model-only step rate.

Without a CUDA GPU it says that it skipped and exits 0. The data are the synthetic signers and the tiny mBART
stand-in (no download); (c) and (d) use mbart-large-cc25's encoder shape with random weights.

    python scripts/gpu_check.py [--out runs/gpu_check] [--gpus N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pretrain.config import PretrainRunConfig  # noqa: E402
from slp.config import load_config  # noqa: E402
from slp.losses.masking import hierarchical_mask  # noqa: E402
from slp.models.pretraining import PretrainingModel  # noqa: E402

# Dense bf16 tensor-core peak (TFLOP/s) from the vendors' datasheets, by a substring of the device name.
DATASHEET_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
                         "GH200": 989.4, "A100": 312.0, "A800": 312.0, "L40S": 362.1, "L40": 181.0, "A6000": 154.8,
                         "A10": 125.0, "L4": 121.0, "B200": 2250.0}
PRETRAIN_STEPS, CHECKPOINT_STEP = 30, 10


def datasheet_peak(name: str) -> float | None:
    for key in sorted(DATASHEET_BF16_TFLOPS, key=len, reverse=True):  # the most specific name first
        if key in name:
            return DATASHEET_BF16_TFLOPS[key] * 1e12
    return None


class CheckFailed(RuntimeError):
    pass


def run(cmd: list[str], log: Path, env: dict | None = None) -> None:
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise CheckFailed(f"`{' '.join(cmd[:6])} …` exited {done.returncode} (log {log}):\n{tail}")


def prepare_data(work: Path, shards: int) -> tuple[Path, Path]:
    from slp.synthetic import SyntheticConfig, corpus_texts, write_synthetic_corpus
    from slp.text.tiny import build_tiny_mbart

    cfg = SyntheticConfig(num_glosses=12, num_signers=8, repetitions=2, sentences_per_signer=6,
                          shard_samples=max(8, 300 // max(shards, 1)))
    if not (work / "corpus" / "manifest.parquet").is_file():
        write_synthetic_corpus(work / "corpus", cfg)
    mbart = work / "tiny_mbart"
    if not (mbart / "config.json").is_file():
        build_tiny_mbart(mbart, corpus_texts(cfg))
    return work / "corpus" / "shards", mbart


def _losses(output: Path) -> dict[int, float]:
    losses = {}
    for line in (output / "steps.jsonl").read_text().splitlines():
        row = json.loads(line)
        losses[row["step"]] = row["loss"]
    return losses


def check_pretrain_resume(work: Path, shards: Path, mbart: Path, gpus: int, precision: str) -> dict:
    """(a): the same losses after a kill at the step-10 checkpoint and a resume."""
    launcher = str(Path(sys.executable).with_name("deepspeed"))

    def command(output: Path, *extra: str) -> list[str]:
        return [launcher, "--num_gpus", str(gpus), "--master_port", str(29600 + os.getpid() % 300),
                "pretrain/run.py", "--config", "configs/pretrain/tiny.yaml", f"output={output}",
                f"data.shards=[{shards}/*.tar]", f"text.name_or_path={mbart}", f"optim.max_steps={PRETRAIN_STEPS}",
                f"checkpoint.every_steps={CHECKPOINT_STEP}", "data.batch_size=8",
                "deepspeed.config=configs/deepspeed/zero2.json", "deepspeed.zero_stage=2",
                f"deepspeed.bf16={str(precision == 'bf16').lower()}", *extra]

    straight, killed = work / "pretrain_straight", work / "pretrain_killed"
    for folder in (straight, killed):  # a rerun in the same --out starts afresh (an old `latest` would end the wait)
        shutil.rmtree(folder, ignore_errors=True)
    start = time.time()
    run(command(straight), work / "pretrain_straight.log")
    seconds = time.time() - start
    reference = _losses(straight)
    if sorted(reference) != list(range(1, PRETRAIN_STEPS + 1)):
        raise CheckFailed(f"the uninterrupted run logged steps {sorted(reference)[:3]}…, not 1..{PRETRAIN_STEPS}")
    with open(work / "pretrain_killed.log", "w") as log:
        proc = subprocess.Popen(command(killed), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        latest = killed / "checkpoints" / "latest"
        deadline = time.time() + 900
        while not latest.is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if not latest.is_file():
        raise CheckFailed(f"the second run wrote no checkpoint (log {work / 'pretrain_killed.log'})")
    resumed_from = int(latest.read_text().strip().removeprefix("step"))
    run(command(killed, "--resume"), work / "pretrain_resumed.log")
    resumed = _losses(killed)
    steps = range(resumed_from + 1, PRETRAIN_STEPS + 1)
    difference = max(abs(resumed[s] - reference[s]) for s in steps)
    # bf16 kernels may use non-deterministic reductions (atomics): allow their rounding, not a different run.
    tolerance = 1e-6 if precision == "fp32" else 2e-2 * max(abs(reference[s]) for s in steps)
    result = {"gpus": gpus, "precision": precision, "resumed_from": resumed_from, "max_loss_difference": difference,
              "tolerance": tolerance, "seconds_30_steps": seconds}
    print(f"(a) pre-training on {gpus} rank(s), ZeRO-2, {precision}: {PRETRAIN_STEPS} steps in {seconds:.0f} s; "
          f"killed after the step-{resumed_from} checkpoint and resumed: max |Δloss| over steps "
          f"{resumed_from + 1}-{PRETRAIN_STEPS} = {difference:.2e} (tolerance {tolerance:.1e})")
    if difference > tolerance:
        raise CheckFailed(f"resumed losses differ by {difference:.3e} > {tolerance:.1e}")
    return result


def check_finetuning(work: Path, shards: Path, mbart: Path, gpus: int, precision: str) -> dict:
    """(b): every head fine-tunes a few steps on all GPUs, then evaluates its best checkpoint."""
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--num_processes", str(gpus),
              "--num_machines", "1", "--mixed_precision", "bf16" if precision == "bf16" else "no",
              "--main_process_port", str(29900 + os.getpid() % 90)]
    if gpus > 1:
        launch.append("--multi_gpu")
    env = dict(os.environ)
    if not torch.cuda.is_available():  # the CPU dry run of this script
        env["ACCELERATE_USE_CPU"] = "1"
    results = {}
    for task in ("islr", "cslr", "slt", "retrieval"):
        out = work / f"finetune_{task}"
        common = ["-m", "finetune.cli", "--task", task, "--config", f"configs/finetune/{task}/synthetic.yaml",
                  f"data.shards=[{shards}/*.tar]", "optim.epochs=1", f"slt.text_model={mbart}",
                  f"retrieval.text_model={mbart}", *(["mixed_precision=bf16"] if precision == "bf16" else [])]
        start = time.time()
        run([*launch, *common, f"output={out / 'train'}"], work / f"finetune_{task}.log", env)
        run([*launch, *common, f"output={out / 'eval'}", "--eval-only", "--checkpoint",
             str(out / "train" / "best.safetensors")], work / f"finetune_{task}_eval.log", env)
        metrics = json.loads((out / "eval" / "metrics.json").read_text())
        trained = json.loads((out / "train" / "metrics.json").read_text())
        main = {"islr": "per_instance_top1", "cslr": "wer", "slt": "bleu4", "retrieval": "mean_r1"}[task]
        if metrics["test"][main] != trained["test"][main]:
            raise CheckFailed(f"{task}: --eval-only test {main} {metrics['test'][main]} differs from the training "
                              f"run's {trained['test'][main]}")
        results[task] = {"seconds": time.time() - start, "dev": metrics["dev"][main], "test": metrics["test"][main]}
        print(f"(b) fine-tuning {task:<9} on {gpus} process(es): {results[task]['seconds']:.0f} s, then --eval-only: "
              f"dev {main} {results[task]['dev']:.2f}, test {results[task]['test']:.2f}")
    return results


def step_inputs(cfg: PretrainRunConfig, batch: int, device: torch.device, dtype: torch.dtype, tokens: int = 32):
    g = torch.Generator().manual_seed(0)
    frames = cfg.data.max_frames
    pose = (torch.rand(batch, frames, 79, 3, generator=g) * 2 - 1).to(device, dtype)
    frame_mask = torch.ones(batch, frames, dtype=torch.bool)
    joint_mask = hierarchical_mask(frame_mask, cfg.loss.mask_ratio, np.random.default_rng(0))
    text = torch.randn(batch, tokens, cfg.model.text_dim, generator=g).to(device, dtype)
    text_mask = torch.ones(batch, tokens, dtype=torch.bool, device=device)
    paired = torch.ones(batch, dtype=torch.bool, device=device)
    return pose, frame_mask.to(device), joint_mask.to(device), text, text_mask, paired


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


class PaperStep:
    """One pre-training step (forward, backward, AdamW) of a model config on random inputs."""

    def __init__(self, config: str, batch: int, device: torch.device, dtype: torch.dtype):
        self.cfg = load_config(PretrainRunConfig, config)
        torch.manual_seed(0)
        self.model = PretrainingModel(self.cfg.model, self.cfg.loss).to(device, dtype)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.batch, self.device, self.dtype = batch, device, dtype
        self.inputs = step_inputs(self.cfg, batch, device, dtype)

    def __call__(self, inputs=None) -> None:
        loss = self.model(*(inputs or self.inputs))["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def seconds(self, steps: int) -> float:
        self()
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self()
        synchronize(self.device)
        return (time.perf_counter() - start) / steps


def check_mfu(config: str, batch: int, steps: int, device: torch.device, dtype: torch.dtype) -> dict:
    """(c): achieved TFLOP/s and MFU of a train step of ``config``."""
    from torch.utils.flop_counter import FlopCounterMode

    step = PaperStep(config, batch, device, dtype)
    step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = step.seconds(steps)
    achieved = flops / seconds
    measured = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 1024)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = datasheet_peak(name) if device.type == "cuda" else None
    frames = step.cfg.data.max_frames
    print(f"(c) {name}: `{Path(config).stem}` step, batch {batch} × {frames} frames, {str(dtype).split('.')[-1]}: "
          f"{flops / 1e12:.3g} TFLOP per step, {seconds * 1e3:.0f} ms → {achieved / 1e12:.3g} TFLOP/s; "
          f"MFU {100 * achieved / measured:.1f} % of the measured matmul peak ({measured / 1e12:.3g} TFLOP/s)"
          + (f", {100 * achieved / sheet:.1f} % of the datasheet's {sheet / 1e12:.0f} TFLOP/s" if sheet else
             ", no datasheet peak known for this device"))
    return {"device": name, "flops_per_step": flops, "seconds_per_step": seconds, "achieved_flops": achieved,
            "matmul_peak": measured, "datasheet_peak": sheet, "samples_per_s": batch / seconds, "step": step}


def check_loader(work: Path, shards: Path, mbart: Path, step: PaperStep, steps: int, step_seconds: float) -> dict:
    """(d): loader rate per worker vs what the model consumes (a step of (c) takes ``step_seconds``); end-to-end
    step rate vs model-only."""
    from transformers import MBartConfig, MBartModel

    from slp.data.loader import PretrainDataConfig, pretrain_batches
    from slp.text.mbart import FrozenTextEncoder, MBartTextTokenizer

    cfg = step.cfg
    data = PretrainDataConfig(shards=[f"{shards}/*.tar"], max_frames=cfg.data.max_frames, batch_size=step.batch,
                              shuffle_buffer=200, bucket_batches=4, num_workers=1)
    tokenizer = MBartTextTokenizer.from_pretrained(mbart, cfg.data.max_text_tokens)
    batches = pretrain_batches(data, tokenizer, mask_ratio=cfg.loss.mask_ratio)
    next(batches)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 10:
        count += len(next(batches).keys)
    loader_rate = count / (time.perf_counter() - start)
    # mbart-large-cc25's encoder shape (12 layers, d 1024) with random weights: its cost, not its knowledge.
    large = MBartConfig(vocab_size=len(tokenizer), d_model=cfg.model.text_dim, encoder_layers=12,
                        encoder_attention_heads=16, encoder_ffn_dim=4096, decoder_layers=1, pad_token_id=1)
    text_encoder = FrozenTextEncoder(MBartModel(large).get_encoder(), tokenizer).to(step.device, step.dtype)
    device, dtype = step.device, step.dtype

    def inputs(batch):
        text = text_encoder(batch.input_ids, batch.text_mask)
        return (batch.pose.to(device, dtype), batch.frame_mask.to(device), batch.joint_mask.to(device),
                text.to(device, dtype), batch.text_mask.to(device), batch.paired.to(device))

    # Model-only: the same kind of real batches, read and encoded beforehand, so both rates see the same shapes.
    ready = [inputs(next(batches)) for _ in range(steps)]
    step(ready[0])
    synchronize(device)
    start = time.perf_counter()
    for prepared in ready:
        step(prepared)
    synchronize(device)
    model_only = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    for _ in range(steps):
        step(inputs(next(batches)))
    synchronize(device)
    end_to_end = (time.perf_counter() - start) / steps
    consumed = step.batch / step_seconds
    print(f"(d) loader: {loader_rate:.0f} samples/s per worker; the model consumes {consumed:.0f} samples/s per GPU "
          f"→ {max(1, int(np.ceil(consumed / loader_rate)))} worker(s) per GPU keep up. End-to-end step (loader + "
          f"text encoder + model): {end_to_end * 1e3:.0f} ms vs model-only {model_only * 1e3:.0f} ms = "
          f"{model_only / end_to_end:.2f} of the model-only rate")
    return {"loader_samples_per_s_per_worker": loader_rate, "model_samples_per_s": consumed,
            "end_to_end_seconds": end_to_end, "model_only_seconds": model_only,
            "end_to_end_fraction": model_only / end_to_end}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs to use (default: all visible)")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="exercise the script on CPU (2 gloo ranks, fp32, `tiny` instead of `paper`): no GPU check")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("gpu-check: skipped (no CUDA GPU visible)")
        return 0
    if args.cpu_dry_run:
        gpus, device, dtype, precision = 2, torch.device("cpu"), torch.float32, "fp32"
        config, batch, steps = "configs/pretrain/tiny.yaml", 8, 3
    else:
        gpus = args.gpus or torch.cuda.device_count()
        device, dtype, precision = torch.device("cuda", 0), torch.bfloat16, "bf16"
        config, batch, steps = "configs/pretrain/paper.yaml", 64, 10  # the paper's 64 clips × 256 frames per GPU
    work = Path(args.out or tempfile.mkdtemp(prefix="slp_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"gpu-check: {gpus} device(s), work folder {work}")
    summary: dict = {}
    stage = "data"
    try:
        shards, mbart = prepare_data(work, gpus)
        stage = "(a) pre-training resume"
        summary["pretrain_resume"] = check_pretrain_resume(work, shards, mbart, gpus, precision)
        stage = "(b) fine-tuning"
        summary["finetune"] = check_finetuning(work, shards, mbart, gpus, precision)
        stage = "(c) MFU"
        mfu = check_mfu(config, batch, steps, device, dtype)
        summary["mfu"] = {k: v for k, v in mfu.items() if k != "step"}
        stage = "(d) loader"
        summary["loader"] = check_loader(work, shards, mbart, mfu["step"], steps, mfu["seconds_per_step"])
    except Exception as exc:  # the first failure ends the check, named, with its cause
        print(f"gpu-check: FAILED at {stage}: {type(exc).__name__}: {exc}")
        return 1
    (work / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print("gpu-check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
