"""Sweeps inside suite files: grid, seeded random search and one-factor-at-a-time ablations.

A suite may hold, besides (or instead of) its explicit ``experiments`` list,
``sweeps`` blocks (``sweep:`` is accepted too, as one block or a list).  Each
block names a base experiment (``config`` + ``overrides``) and exactly one of
``grid``, ``random`` or ``ablation``::

    name: tune_dann
    seeds: [0, 1, 2]
    sweep_seed: 0                        # seeds the random search (default 0)
    sweeps:
      - kind: grid                       # optional; inferred from the key below
        name: grid                       # prefix of the generated names (default: the kind)
        config: ../experiments/digits_da.yaml
        overrides: [method.name=dann]
        grid:                            # cartesian product over dotted keys
          optim.lr: [0.01, 0.001]
          method.args.trade_off: [0.1, 1.0]
        selection: {metric: val/source/digit/accuracy, mode: max}
      - name: random
        config: ../experiments/digits_da.yaml
        overrides: [method.name=dann]
        seeds: [0]                       # a block may use its own seeds
        random:
          n: 8                           # number of sampled configurations
          params:
            optim.lr: {loguniform: [1.0e-4, 1.0e-1]}
            method.args.trade_off: {uniform: [0.1, 1.0]}
            data.batch_size: {int: [16, 64]}          # inclusive bounds
            method.args.hidden_sizes: {choice: [[1024, 1024], [100]]}
      - name: ablation
        config: ../experiments/digits_da.yaml
        overrides: [method.name=dann]    # the base every entry is compared with
        ablation:                        # one factor at a time: name → overrides
          no_grl_schedule: [method.args.schedule=constant]
          small_discriminator: [method.args.hidden_sizes=[100]]

Generated experiment names are stable and readable:
``grid/lr=0.01,trade_off=0.1``, ``random/trial03``, ``ablation/base`` and
``ablation/no_grl_schedule``.  A random trial's value for a key depends only
on (sweep seed, trial index, key name), through a hash-seeded generator, so
adding a key or changing ``n`` never changes the values already drawn (the
DomainBed way of making random search reproducible).

Selection (:func:`benchmarks.selection.select_configuration`): a block's ``selection`` rule picks,
among the block's configurations (each a group of runs that differ only in
seed), the one with the best mean over seeds of a *validation* metric.  The
oracle choice (best by a test metric) is computed next to it as an upper
bound and is never used to pick, unless the rule itself says ``oracle: true``
(then it is labelled an oracle selection).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError
from .metric_names import reads_held_out_labels

KINDS = ("grid", "random", "ablation")
BLOCK_KEYS = ("kind", "name", "config", "overrides", "seeds", "seed", "selection", *KINDS)
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
SELECTION_KEYS = ("metric", "mode", "oracle")
BASE_NAME = "base"


# --------------------------------------------------------------------------- line numbers


class SourceLines:
    """Line numbers of every node of a YAML file, by path (``("sweeps", 0, "grid", "optim.lr")``).

    Built from ``yaml.compose`` so that errors can say ``suite.yaml:12``.
    """

    def __init__(self, path: str | Path, text: str | None = None):
        self.path = Path(path)
        self.lines: dict[tuple, int] = {}
        try:
            root = yaml.compose(text if text is not None else self.path.read_text())
        except yaml.YAMLError:
            root = None  # load_yaml reports syntax errors itself
        if root is not None:
            self._walk(root, ())

    def _walk(self, node, prefix: tuple) -> None:
        self.lines[prefix] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
                self.lines[(*prefix, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*prefix, key))
                self.lines[(*prefix, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*prefix, i))

    def line(self, where: tuple) -> int | None:
        where = tuple(where)
        while where and where not in self.lines:
            where = where[:-1]
        return self.lines.get(where)

    def at(self, where: tuple) -> str:
        """``file:line`` for the node at ``where`` (or its nearest ancestor that exists)."""
        line = self.line(where)
        return f"{self.path}:{line}" if line else str(self.path)

    def error(self, where: tuple, message: str) -> ConfigError:
        return ConfigError(f"{self.at(where)}: {dotted_path(where)}: {message}")


def dotted_path(where: tuple) -> str:
    out = ""
    for part in where:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (f"'{part}'" if "." in str(part) else str(part))
    return out or "<top>"


# --------------------------------------------------------------------------- values and names


def format_value(value: Any) -> str:
    """A value as it appears in an override (YAML flow syntax that parses back to ``value``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int,)):
        return str(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    text = str(value)
    if yaml.safe_load(text) == text and "," not in text:
        return text
    return json.dumps(text)


def override(key: str, value: Any) -> str:
    return f"{key}={format_value(value)}"


def name_value(value: Any) -> str:
    """A short, file-system-friendly rendering of a value for experiment names."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "-".join(name_value(v) for v in value) or "none"
    if isinstance(value, dict):
        return "-".join(f"{k}:{name_value(v)}" for k, v in value.items())
    return re.sub(r"[^A-Za-z0-9_.:+-]", "_", str(value))


def short_keys(keys: list[str]) -> dict[str, str]:
    """The shortest unambiguous dotted suffix of each key (``optim.lr`` → ``lr``)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            candidate = ".".join(parts[-n:])
            clashes = [k for k in keys if k != key and (k == candidate or k.endswith("." + candidate))]
            if not clashes:
                out[key] = candidate
                break
        else:
            out[key] = key
    return out


# --------------------------------------------------------------------------- random search


def hash_seed(*parts: Any) -> int:
    """A 63-bit seed from any values, stable across processes and Python versions (unlike ``hash``)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample(distribution: dict, rng: random.Random) -> Any:
    """One draw from a distribution spec ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ..."""
    (kind, arg), = distribution.items()
    u = rng.random()
    if kind == "choice":
        return arg[min(int(u * len(arg)), len(arg) - 1)]
    lo, hi = arg
    if kind == "uniform":
        return lo + (hi - lo) * u
    if kind == "loguniform":
        return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    if kind == "int":
        return int(lo) + min(int(u * (int(hi) - int(lo) + 1)), int(hi) - int(lo))
    raise ValueError(f"unknown distribution {kind!r}")


def sample_trial(sweep_seed: int, trial: int, params: dict[str, dict]) -> dict[str, Any]:
    """Trial ``trial``'s values: each key drawn from a generator seeded by (sweep seed, trial, key)."""
    return {key: sample(dist, random.Random(hash_seed(sweep_seed, trial, key))) for key, dist in params.items()}


# --------------------------------------------------------------------------- blocks → experiments


@dataclass
class Generated:
    """One configuration produced by a sweep block (run once per seed)."""

    name: str
    config: str
    overrides: list[str]
    sweep: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] | None = None
    where: tuple = ()


@dataclass
class SweepBlock:
    name: str
    kind: str
    config: str
    overrides: list[str]
    seeds: list[int] | None
    selection: dict | None
    experiments: list[Generated]
    where: tuple


def check_selection(rule: Any, lines: SourceLines, where: tuple) -> dict | None:
    if rule is None:
        return None
    if not isinstance(rule, dict):
        raise lines.error(where, "selection must be a mapping such as {metric: val/source/digit/accuracy, mode: max}")
    unknown = sorted(set(rule) - set(SELECTION_KEYS))
    if unknown:
        raise lines.error((*where, unknown[0]), f"unknown selection key '{unknown[0]}'; valid keys: {', '.join(SELECTION_KEYS)}")
    metric = rule.get("metric")
    if not isinstance(metric, str) or "/" not in metric:
        raise lines.error((*where, "metric"), "selection.metric must be a metric name such as val/source/digit/accuracy")
    mode = rule.get("mode", "max")
    if mode not in ("max", "min"):
        raise lines.error((*where, "mode"), f"selection.mode is {mode!r}; choose max or min")
    oracle = rule.get("oracle", False)
    if not isinstance(oracle, bool):
        raise lines.error((*where, "oracle"), "selection.oracle must be true or false")
    if not oracle and (reads_held_out_labels(metric) or not metric.startswith("val/")):
        raise lines.error(
            (*where, "metric"),
            f"'{metric}' is not a validation metric: selecting hyperparameters on target/test labels is an oracle, "
            "reported only as an upper bound. Use a val/ metric, or set oracle: true to label this an oracle selection",
        )
    return {"metric": metric, "mode": mode, "oracle": oracle}


def _string_list(value: Any, lines: SourceLines, where: tuple, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise lines.error(where, f"{what} must be a list of dotted overrides such as [train.epochs=3]")
    for i, item in enumerate(value):
        if "=" not in item or item.startswith("="):
            raise lines.error((*where, i), f"override '{item}' is not of the form dotted.key=value")
    return list(value)


def _seeds(value: Any, lines: SourceLines, where: tuple) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise lines.error(where, "seeds must be a non-empty list of integers")
    return list(value)


def _check_key(key: Any, lines: SourceLines, where: tuple) -> str:
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise lines.error(where, f"'{key}' is not a dotted config key such as optim.lr")
    return key


def _grid(spec: Any, block: dict, lines: SourceLines, where: tuple) -> list[Generated]:
    if not isinstance(spec, dict) or not spec:
        raise lines.error(where, "grid must map dotted keys to lists of values, e.g. {optim.lr: [0.1, 0.01]}")
    for key, values in spec.items():
        _check_key(key, lines, (*where, key))
        if not isinstance(values, list) or not values:
            raise lines.error((*where, key), f"grid key '{key}' needs a non-empty list of values")
    keys = list(spec)
    short = short_keys(keys)
    out = []
    for combo in itertools.product(*(spec[k] for k in keys)):
        params = dict(zip(keys, combo))
        label = ",".join(f"{short[k]}={name_value(v)}" for k, v in params.items())
        out.append(Generated(label, block["config"], [override(k, v) for k, v in params.items()], "", "grid", params, where=where))
    return out


def _random(spec: Any, block: dict, sweep_seed: int, lines: SourceLines, where: tuple) -> list[Generated]:
    if not isinstance(spec, dict):
        raise lines.error(where, "random must be a mapping with 'n' and 'params'")
    unknown = sorted(set(spec) - {"n", "params", "seed"})
    if unknown:
        raise lines.error((*where, unknown[0]), f"unknown key '{unknown[0]}' in random; valid keys: n, params, seed")
    n = spec.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise lines.error((*where, "n"), "random.n must be a positive integer (the number of sampled configurations)")
    seed = spec.get("seed", block.get("seed", sweep_seed))
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise lines.error((*where, "seed"), "the random-search seed must be an integer")
    params = spec.get("params")
    if not isinstance(params, dict) or not params:
        raise lines.error((*where, "params"), "random.params must map dotted keys to distributions, e.g. {optim.lr: {loguniform: [1e-4, 1e-1]}}")
    for key, dist in params.items():
        at = (*where, "params", key)
        _check_key(key, lines, at)
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise lines.error(at, f"'{key}' needs exactly one distribution: {', '.join(DISTRIBUTIONS)} (e.g. {{uniform: [0.1, 1.0]}})")
        (kind, arg), = dist.items()
        at = (*at, kind)
        if kind == "choice":
            if not isinstance(arg, list) or not arg:
                raise lines.error(at, f"choice for '{key}' needs a non-empty list of values")
            continue
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in arg)):
            raise lines.error(
                at, f"{kind} for '{key}' needs [low, high] numbers (YAML reads 1e-4 as a string: write 1.0e-4)"
            )
        lo, hi = arg
        if lo > hi:
            raise lines.error(at, f"{kind} for '{key}': low {lo} is above high {hi}")
        if kind == "loguniform" and lo <= 0:
            raise lines.error(at, f"loguniform for '{key}' needs positive bounds")
        if kind == "int" and not all(isinstance(a, int) for a in arg):
            raise lines.error(at, f"int for '{key}' needs integer bounds")
    width = max(2, len(str(n - 1)))
    out = []
    for trial in range(n):
        values = sample_trial(seed, trial, params)
        out.append(
            Generated(f"trial{trial:0{width}d}", block["config"], [override(k, v) for k, v in values.items()], "", "random", values, where=where)
        )
    return out


def _ablation(spec: Any, block: dict, lines: SourceLines, where: tuple) -> list[Generated]:
    if not isinstance(spec, dict) or not spec:
        raise lines.error(where, "ablation must map a name to the overrides that turn one component off or swap it")
    out = [Generated(BASE_NAME, block["config"], [], "", "ablation", {}, where=where)]
    for name, overrides in spec.items():
        at = (*where, name)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise lines.error(at, f"ablation name '{name}' may only use letters, digits and _ . + -")
        if name == BASE_NAME:
            raise lines.error(at, f"'{BASE_NAME}' is reserved for the unmodified base configuration")
        items = _string_list(overrides, lines, at, f"ablation '{name}'")
        if not items:
            raise lines.error(at, f"ablation '{name}' changes nothing; give at least one override")
        params = {}
        for item in items:
            key, value = item.split("=", 1)
            params[key] = yaml.safe_load(value) if value else value
        out.append(Generated(name, block["config"], items, "", "ablation", params, where=at))
    return out


def expand_block(block: Any, where: tuple, sweep_seed: int, lines: SourceLines) -> SweepBlock:
    """Validate one sweep block (at path ``where`` of the suite) and generate its experiments."""
    if not isinstance(block, dict):
        raise lines.error(where, "a sweep block must be a mapping with config, overrides and one of grid/random/ablation")
    unknown = sorted(set(block) - set(BLOCK_KEYS))
    if unknown:
        raise lines.error((*where, unknown[0]), f"unknown sweep key '{unknown[0]}'; valid keys: {', '.join(BLOCK_KEYS)}")
    present = [k for k in KINDS if k in block]
    if len(present) != 1:
        raise lines.error(where, f"a sweep block needs exactly one of {', '.join(KINDS)} (found {', '.join(present) or 'none'})")
    kind = present[0]
    if block.get("kind", kind) != kind:
        raise lines.error((*where, "kind"), f"kind is {block['kind']!r} but the block holds '{kind}'")
    if not isinstance(block.get("config"), str):
        raise lines.error((*where, "config") if "config" in block else where, "a sweep block needs 'config': the base experiment YAML")
    name = block.get("name", kind)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*", name):
        raise lines.error((*where, "name"), f"sweep name {name!r} may only use letters, digits, / and _ . + -")
    overrides = _string_list(block.get("overrides"), lines, (*where, "overrides"), "overrides")
    seeds = _seeds(block.get("seeds"), lines, (*where, "seeds"))
    selection = check_selection(block.get("selection"), lines, (*where, "selection"))
    spec = block[kind]
    if kind == "grid":
        generated = _grid(spec, block, lines, (*where, "grid"))
    elif kind == "random":
        generated = _random(spec, block, sweep_seed, lines, (*where, "random"))
    else:
        generated = _ablation(spec, block, lines, (*where, "ablation"))
    for g in generated:
        g.name = f"{name}/{g.name}"
        g.sweep = name
        g.overrides = [*overrides, *g.overrides]
        g.seeds = seeds
    names = [g.name for g in generated]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise lines.error((*where, kind), f"the sweep generates repeated names {repeated}; the values differ too little to name apart")
    return SweepBlock(name, kind, block["config"], overrides, seeds, selection, generated, where)


def sweep_blocks(raw: dict, lines: SourceLines) -> list[SweepBlock]:
    """Every sweep block of a raw suite mapping (``sweeps:`` list and/or ``sweep:`` block or list)."""
    sweep_seed = raw.get("sweep_seed", 0)
    if not isinstance(sweep_seed, int) or isinstance(sweep_seed, bool):
        raise lines.error(("sweep_seed",), "sweep_seed must be an integer")
    blocks = []
    for key in ("sweeps", "sweep"):
        if key not in raw or raw[key] is None:
            continue
        value = raw[key]
        if isinstance(value, dict):
            blocks.append(expand_block(value, (key,), sweep_seed, lines))
        elif isinstance(value, list):
            blocks.extend(expand_block(b, (key, i), sweep_seed, lines) for i, b in enumerate(value))
        else:
            raise lines.error((key,), f"'{key}' must be a sweep block or a list of them")
    names = [b.name for b in blocks]
    for b in blocks:
        if names.count(b.name) > 1:
            raise lines.error((*b.where, "name"), f"two sweep blocks are named '{b.name}'; give each a distinct 'name'")
    return blocks
