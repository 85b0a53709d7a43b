"""diffusers schedulers configured from the model's training noise schedule.

DDIM (40 steps) is the paper's sampler; DPM-Solver++(2M) and UniPC are fast multistep solvers
that reach similar quality in far fewer steps; Euler is there for users who know it. Inference
may override prediction type, zero-terminal-SNR rescaling and timestep spacing, but should match
what the checkpoint was trained with (stored in its config).
"""
from __future__ import annotations

import dataclasses

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

from .config import NoiseSchedule
from .errors import InputError

SCHEDULERS = {
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": False}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
}


def make_scheduler(name: str, noise: NoiseSchedule, **overrides):
    """A fresh scheduler `name` (see SCHEDULERS) for the schedule `noise`, with field overrides."""
    if name not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(NoiseSchedule)}
    if unknown:
        raise InputError(f"unknown scheduler settings {sorted(unknown)}")
    schedule = dataclasses.replace(noise, **overrides)
    if schedule.prediction_type not in ("epsilon", "v_prediction"):
        raise InputError(f"prediction_type must be 'epsilon' or 'v_prediction', got {schedule.prediction_type!r}")
    if schedule.timestep_spacing not in ("leading", "trailing", "linspace"):
        raise InputError(f"timestep_spacing must be leading, trailing or linspace, got {schedule.timestep_spacing!r}")
    cls, extra = SCHEDULERS[name]
    kwargs = dataclasses.asdict(schedule)
    if name == "euler" and schedule.rescale_betas_zero_snr:
        # Euler's sigma at a zero-SNR terminal step is infinite; diffusers clamps it with this flag.
        extra = {**extra, "final_sigmas_type": "zero"}
    return cls(**kwargs, **extra)
