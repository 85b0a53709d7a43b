"""Soundtracks for synthetic clips and the mouth rule that ties the drawn mouth to them.

Speech comes from espeak-ng (`synthesize`), with sentences in several languages and voice variants
chosen by seed, or from the user's audio files. A fixed share of the sentences (every
`HOLDOUT_EVERY`-th of each language) is reserved for the held-out split, so evaluation clips never
say a training sentence.

The mouth rule (`mouth_curve`), which is also the ground truth of the `mouth_open` tensor:
frame i shows time i / fps; its mouth opening is the RMS of the 16 kHz audio in a window of one
frame's duration centred on that time (zeros outside the clip), in dBFS, mapped linearly from
[MOUTH_DB_CLOSED, MOUTH_DB_OPEN] = [-45, -15] dB to [0, 1] (clipped), then smoothed over three frames
with weights (1/4, 1/2, 1/4) (ends repeated).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

SAMPLE_RATE = 16000
MOUTH_DB_CLOSED = -45.0
MOUTH_DB_OPEN = -15.0
HOLDOUT_EVERY = 4          # sentence k of a language is held out when k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
TARGET_PEAK = 0.4          # every soundtrack is scaled to this peak before use

SENTENCES = {
    "en": [
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "I never thought that a little robot could sing so beautifully at night.",
        "Please bring me two cups of coffee and a slice of lemon cake.",
        "We walked along the beach until the sun went down behind the hills.",
        "Could you tell me the way to the old library on the main square?",
        "My grandmother keeps a garden full of roses, tulips and tall sunflowers.",
        "The train to the city leaves at seven, so we should hurry up.",
        "Every morning the baker opens his shop before anyone else is awake.",
        "She laughed when the puppy tried to catch its own tail again.",
        "Learning a new language takes patience, practice and a lot of curiosity.",
        "The storm knocked down three trees and the lights went out for hours.",
        "On Sundays we cook pasta together and talk about the week ahead.",
        "A good story needs a hero, a problem and a surprising ending.",
        "He painted the fence blue, then decided that he preferred green.",
        "Astronomers found a distant planet that might have water on its surface.",
        "Turn left at the bridge and you will see the museum on your right.",
    ],
    "de": [
        "Der Hund spielt jeden Morgen im Garten mit einem roten Ball.",
        "Wir fahren morgen mit dem Zug nach Berlin und besuchen meine Tante.",
        "Kannst du mir bitte sagen, wie spaet es gerade ist?",
        "Im Winter trinken wir gern heissen Tee mit Honig und Zitrone.",
        "Die Kinder lachen laut, weil der Clown ueber seine Schuhe stolpert.",
        "Nach dem Regen riecht die Luft im Wald ganz frisch und klar.",
        "Mein Bruder baut ein kleines Boot aus Holz fuer den See.",
        "Heute Abend kochen wir Suppe und backen frisches Brot.",
    ],
    "fr": [
        "Le petit chat dort tranquillement sur le canape du salon.",
        "Nous partons en vacances a la mer au debut du mois de juillet.",
        "Pouvez-vous me dire ou se trouve la gare, s'il vous plait?",
        "Ma soeur prepare une tarte aux pommes pour le dejeuner de dimanche.",
        "Les enfants jouent dans le parc jusqu'a la tombee de la nuit.",
        "Il fait tres beau aujourd'hui, allons nous promener au bord du lac.",
        "Le musicien joue une melodie douce sur son vieux piano.",
        "Je voudrais un croissant et un grand cafe au lait, merci.",
    ],
    "es": [
        "El perro corre feliz por la playa detras de las gaviotas.",
        "Manana vamos a visitar a mis abuelos en el pueblo.",
        "Me gustaria aprender a tocar la guitarra este verano.",
        "La biblioteca abre a las nueve y cierra a las ocho de la tarde.",
        "Los ninos construyen un castillo de arena muy grande.",
        "Mi madre cocina la mejor paella de toda la ciudad.",
        "El cielo esta lleno de estrellas esta noche tan clara.",
        "Necesito comprar pan, leche y unas naranjas en el mercado.",
    ],
}

# (espeak-ng voice, language of its sentences). "+f3" etc. are espeak-ng voice variants.
DEFAULT_VOICES = (
    ("en-us", "en"), ("en-us+f3", "en"), ("en-gb", "en"), ("en-gb+f2", "en"), ("en-us+m3", "en"),
    ("en-gb-scotland", "en"), ("en-us+f4", "en"), ("de", "de"), ("de+f3", "de"), ("fr-fr", "fr"),
    ("fr-fr+f2", "fr"), ("es", "es"), ("es+f3", "es"),
)


def sentences_for(language: str, held_out: bool) -> list[str]:
    """The sentences of `language` in the training (held_out=False) or held-out split."""
    if language not in SENTENCES:
        raise InputError(f"No sentences for language {language!r}; known: {', '.join(sorted(SENTENCES))}.")
    return [s for k, s in enumerate(SENTENCES[language]) if (k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1) == held_out]


def espeak_binary() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InputError("espeak-ng is not installed (it speaks the synthetic clips). Install it with "
                         "`apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS), "
                         "or give your own speech with --audio DIR.")
    return exe


def synthesize(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50) -> torch.Tensor:
    """espeak-ng speech of `text`: float32 mono [S] at 16 kHz."""
    from ..audio import load_audio
    exe = espeak_binary()
    with tempfile.TemporaryDirectory(prefix="emo-espeak-") as tmp:
        wav = Path(tmp) / "speech.wav"
        done = subprocess.run([exe, "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch)), "-w", str(wav), text],
                              capture_output=True, text=True)
        if done.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            raise InputError(f"espeak-ng could not speak with voice {voice!r} (exit {done.returncode}: "
                             f"{done.stderr.strip() or 'no output'}). List voices with `espeak-ng --voices`.")
        return load_audio(wav, SAMPLE_RATE)


def normalise(audio: torch.Tensor) -> torch.Tensor:
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    return audio * (TARGET_PEAK / peak) if peak > 1e-6 else audio.clone()


def fit(audio: torch.Tensor, num_samples: int, lead: int = 0) -> torch.Tensor:
    """`lead` samples of silence, then the audio, cut or zero-padded to num_samples."""
    out = torch.zeros(num_samples, dtype=torch.float32)
    body = audio[: max(0, num_samples - lead)]
    out[lead:lead + len(body)] = body
    return out


def frame_db(audio, fps: float, num_frames: int) -> np.ndarray:
    """RMS level in dBFS of a one-frame window centred on each frame's time (see the module docstring)."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    win = max(1, round(SAMPLE_RATE / fps))
    half = win // 2
    padded = np.concatenate([np.zeros(half), x, np.zeros(win + half)])
    csum = np.concatenate([[0.0], np.cumsum(padded ** 2)])
    centres = np.round(np.arange(num_frames) * SAMPLE_RATE / fps).astype(np.int64)  # index in x; +half in padded
    energy = (csum[centres + win] - csum[centres]) / win   # padded[c : c + win] = x[c - half : c - half + win]
    return 10 * np.log10(np.maximum(energy, 1e-20))


def mouth_curve(audio, fps: float, num_frames: int) -> np.ndarray:
    """The documented mouth rule: float32 [num_frames] in 0..1 (see the module docstring)."""
    level = (frame_db(audio, fps, num_frames) - MOUTH_DB_CLOSED) / (MOUTH_DB_OPEN - MOUTH_DB_CLOSED)
    level = np.clip(level, 0.0, 1.0)
    padded = np.concatenate([level[:1], level, level[-1:]])
    smooth = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    return smooth.astype(np.float32)
