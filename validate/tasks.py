"""The three continuum tasks of the embedded validation: procedural generators and disjoint splits.

Each task wraps a real procedural generator (``reasoning_gym``; its ``figlet_font`` draws with
``pyfiglet``) and turns its items into short character-level ``prompt``/``response`` pairs:

=================  =============  ==========================  =====================================
task               role           pretraining exposure        generator
=================  =============  ==========================  =====================================
``spell_backward`` model-strong   heavy (most of the corpus)  reasoning_gym ``spell_backward``, 3-6
                                                              letter words
``letter_jumble``  intermediate   light (a small share)       reasoning_gym ``letter_jumble``, one
                                                              3-8 letter word, partly scrambled
``figlet``         model-weak     none                        reasoning_gym ``figlet_font`` (pyfiglet
                                                              font ``small``, 3-4 letter upper-case
                                                              words, spaced letters as the paper)
=================  =============  ==========================  =====================================

The intermediate task was first ``chain_sum`` (reasoning_gym arithmetic), but at every exposure we
tried (a fifth to a half of the corpus, 2-digit or 1-digit terms) the backbone's answer-token p stayed
at 0.18-0.25, the share the answer distribution alone explains: it never learned the sums. Unscrambling
reuses what the backbone knows (letters of the prompt, English words from ``spell_backward``'s prompts),
so light exposure lands it in between.

Splits never overlap: an item's split is a pure function of its *key* (the answer word),
``sha1(task, key) mod 100`` -> held-out (< 10), SFT train (< 45) or pretraining (the rest), so the same
word can never be in two splits whatever the pool sizes or seeds. Generation is deterministic for a
seed.

    >>> from probsft.validate.tasks import TASKS, sample, write_task_data
    >>> sample(TASKS["figlet"], "train", 3, seed=0)[0]["response"]
    >>> write_task_data("data/validate", n_train=512, n_heldout=64)   # <task>/{train,heldout}.jsonl
"""

from __future__ import annotations

import dataclasses
import hashlib
import string
from pathlib import Path
from typing import Callable, Iterable

from probsft.errors import ConfigError
from probsft.files import atomic_write, json_text

SPLITS = ("pretrain", "train", "heldout")
# The tokenizer alphabet: printable ASCII and newline covers every task (checked in the tests).
ALPHABET = "".join(sorted(set(string.printable) - set("\t\r\x0b\x0c")))


@dataclasses.dataclass(frozen=True)
class Task:
    """One continuum task: ``items(size, seed)`` yields ``(key, prompt, response)`` triples."""

    name: str
    role: str          # "model-strong" | "intermediate" | "model-weak"
    exposure: str      # pretraining exposure: "heavy" | "light" | "none"
    source: str        # the generator it wraps
    items: Callable[[int, int], Iterable[tuple[str, str, str]]]
    metric: str = "exact_match"  # the held-out metric the paper reports for this kind of task
    pretrain_unique: bool = True  # False: fewer distinct items than a pretraining pool, so repeat


def _spell_backward(size: int, seed: int):
    import reasoning_gym

    for x in reasoning_gym.create_dataset("spell_backward", size=size, seed=seed,
                                          min_word_len=3, max_word_len=6):
        word = x["question"].rsplit(": ", 1)[1]
        yield word, x["question"] + "\n", x["answer"]


def _letter_jumble(size: int, seed: int):
    import reasoning_gym

    for x in reasoning_gym.create_dataset("letter_jumble", size=size, seed=seed, min_word_len=3,
                                          max_word_len=8, min_words=1, max_words=1):
        # reasoning_gym's prompt is ~400 characters of instructions; the backbone's context is 256
        scrambled = x["metadata"]["scrambled_words"][0]
        yield x["answer"], f"Unscramble this word: {scrambled}\n", x["answer"]


def _figlet(size: int, seed: int):
    import reasoning_gym

    for x in reasoning_gym.create_dataset("figlet_font", size=size, seed=seed, static_font="small",
                                          min_word_len=3, max_word_len=4, space_letters=True):
        # Trailing blanks carry no information; stripping them keeps the sequences ~120 characters.
        art = "\n".join(line.rstrip() for line in x["question"].split("\n")).strip("\n")
        yield x["answer"], art + "\n", x["answer"]


# The dial: one format, distinct character transformations of random lower-case letter strings.
# ``probsft backbone build`` pretrains each at its own dose (BackboneConfig.mix), so each lands at
# its own base-model answer p (the probe places it): a graded prior on a real transformer.
LETTERS = string.ascii_lowercase
VOWELS = set("aeiou")


def _shift(k: int):
    return lambda w: "".join(LETTERS[(LETTERS.index(c) + k) % 26] for c in w)


def _swap_pairs(w: str) -> str:
    return "".join(w[i + 1] + w[i] if i + 1 < len(w) else w[i] for i in range(0, len(w), 2))


TRANSFORMS: dict[str, tuple[str, Callable[[str], str]]] = {
    # name: (description, function); the prompt is "<name> <letters>\n", the response f(letters)
    "rev": ("reverse the string", lambda w: w[::-1]),
    "swp": ("swap adjacent pairs", _swap_pairs),
    "rol": ("rotate left by one", lambda w: w[1:] + w[:1]),
    "ror": ("rotate right by one", lambda w: w[-1:] + w[:-1]),
    "sh1": ("Caesar shift by 1", _shift(1)),
    "sh2": ("Caesar shift by 2", _shift(2)),
    "sh3": ("Caesar shift by 3", _shift(3)),
    "sh5": ("Caesar shift by 5", _shift(5)),
    "nov": ("drop the vowels", lambda w: "".join(c for c in w if c not in VOWELS)),
    "srt": ("sort the letters", lambda w: "".join(sorted(w))),
    "cpy": ("copy the string", lambda w: w),
}
MIN_LEN, MAX_LEN = 5, 8


def _transform(name: str):
    fn = TRANSFORMS[name][1]

    def items(size: int, seed: int):
        import random

        rng = random.Random(f"{name}:{seed}")
        for _ in range(size):
            w = "".join(rng.choice(LETTERS) for _ in range(rng.randint(MIN_LEN, MAX_LEN)))
            answer = fn(w)
            if answer:                 # "nov" of an all-vowel string has no answer token
                yield w, f"{name} {w}\n", answer
    return items


TASKS: dict[str, Task] = {
    "spell_backward": Task("spell_backward", "model-strong", "heavy",
                           "reasoning_gym spell_backward", _spell_backward),
    # reasoning_gym draws its words from one text (~1,600 distinct words of 3-8 letters, ~900 in
    # the pretrain split): the pretraining corpus repeats them, with fresh scrambles.
    "letter_jumble": Task("letter_jumble", "intermediate", "light",
                          "reasoning_gym letter_jumble (one word)", _letter_jumble,
                          pretrain_unique=False),
    "figlet": Task("figlet", "model-weak", "none", "reasoning_gym figlet_font (pyfiglet 'small')",
                   _figlet, metric="jaro_winkler"),
    **{f"t_{name}": Task(f"t_{name}", "dial", "dose", f"random letters, {desc}", _transform(name))
       for name, (desc, _) in TRANSFORMS.items()},
}

DIAL = tuple(name for name in TASKS if name.startswith("t_"))    # the dial's tasks (positions)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


def split_of(task: str, key: str) -> str:
    """The split an item belongs to, a pure function of (task, key): the splits never overlap."""
    h = int.from_bytes(hashlib.sha1(f"{task}\0{key}".encode()).digest()[:4], "big") % 100
    return "heldout" if h < 10 else "train" if h < 45 else "pretrain"


def sample(task: Task, split: str, n: int, seed: int = 0, unique: bool = True) -> list[dict]:
    """``n`` records ``{"prompt", "response"}`` of one split, deterministic for ``seed``.

    ``unique`` keeps one item per key (SFT and held-out sets); pretraining may repeat keys.
    Raises ConfigError if the generator cannot supply ``n`` distinct items of that split.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose from {SPLITS}")
    out, seen, pool = [], set(), max(64, 4 * n)
    for attempt in range(6):
        for key, prompt, response in task.items(pool, seed * 1000 + attempt):
            if split_of(task.name, key) != split or (unique and key in seen):
                continue
            seen.add(key)
            out.append({"prompt": prompt, "response": response})
            if len(out) == n:
                return out
        pool *= 2
    raise ConfigError(f"task {task.name}: only {len(out)} distinct {split} items, {n} asked")


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write records as JSONL atomically (tmp file then rename)."""
    atomic_write(path, "".join(json_text(r, indent=None) + "\n" for r in records))


def write_task_data(out_dir, tasks: Iterable[str] = tuple(TASKS), n_train: int = 512,
                    n_heldout: int = 64, seed: int = 0) -> dict[str, dict[str, Path]]:
    """Write ``<out_dir>/<task>/{train,heldout}.jsonl``; returns ``{task: {split: path}}``.

    Files that already hold at least the asked number of lines are reused (generation is
    deterministic and a smaller set is a prefix of a larger one), so one copy of each task's data
    serves every grid: read it with :func:`read_prefix`.
    """
    paths = {}
    for name in tasks:
        task = get_task(name)
        paths[name] = {}
        for split, n in (("train", n_train), ("heldout", n_heldout)):
            path = Path(out_dir) / name / f"{split}.jsonl"
            if not (path.exists() and sum(1 for _ in open(path)) >= n):
                write_jsonl(path, sample(task, split, n, seed))
            paths[name][split] = path
    return paths


def read_prefix(path: Path, n: int) -> list[dict]:
    """The first ``n`` records of a task file written by :func:`write_task_data`."""
    from probsft.validate.data import read_jsonl

    return read_jsonl(path)[:n]
