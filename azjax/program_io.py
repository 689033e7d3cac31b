"""Program validation and the text and JSON forms of programs (docs/ops.md).

`validate` checks a program or population against a `ProgramSpec` with vectorized NumPy, and
raises `ProgramError` naming the first bad (program, component, slot, field). The fields are
`op`, `in1`, `in2`, `out` (the code columns), `c0`..`c2` (the constants) and `length`. Unused
address fields and unused constants must be 0 (`Instruction`'s contract), which is also what
makes the text and JSON forms, that hold only the fields an op uses, exact.

Text form: the original's readable layout, one instruction per line in the paper's notation,
driven by each op's `template` in `azjax.ops`::

    def Setup():
      s2 = 0.001
    def Predict():
      s1 = dot(v0, v1)
    def Learn():
      s3 = s0 - s1
      ...

`format_program` prints the pruned program by default (no dead code, no `NoOp()` lines); with
`pruned=False` it prints every slot up to `length`. Constants print as the shortest text that
round-trips the float32 value (`0.01`, `-0.53`), so `parse_program(format_program(p,
pruned=False), spec)` equals `p` bit for bit. Index constants print as the
stored fraction: in `v1[0.375] = 0.5` the bracket holds the index fraction, and the VM writes
entry `int(F * 0.375)`; likewise `m0[0.1, 0.9] = 2.0` holds the row and column fractions. The
parser also accepts blank lines, `#` comments and any indentation.

JSON form (`"format": "azjax.program/1"`): per component `{"size": L, "instructions": [...]}`,
each instruction `{"op": name, "in1": .., "in2": .., "out": .., "consts": [...]}` with only the
fields the op uses. Constants are stored as Python floats, which hold float32 values exactly.
`size` records the capacity the program was saved from; loading only needs the instructions to
fit the spec it is loaded into.
"""

from __future__ import annotations

import json
import os
import re
from typing import NamedTuple

import numpy as np

from azjax import ops as ops_lib
from azjax import pruning
from azjax.program import (
    COMPONENTS,
    FEATURES_VECTOR,
    PREDICTION_SCALAR,
    Instruction,
    Program,
    ProgramSpec,
    make_program,
)

FORMAT = "azjax.program/1"
Kind = ops_lib.Kind
_CODE_FIELDS = ("op", "in1", "in2", "out")
_CONST_FIELDS = tuple(f"c{j}" for j in range(ops_lib.NUM_CONSTS))
_ALL_FIELDS = _CODE_FIELDS + _CONST_FIELDS


class ProgramError(ValueError):
    """A program that breaks its spec, or text/JSON that does not parse.

    Attributes (None where not applicable): `component` name, `program` index (int, or a tuple
    for a multi-axis batch), `slot`, `field` (op, in1, in2, out, c0..c2, length).
    """

    def __init__(self, message, *, component=None, program=None, slot=None, field=None):
        super().__init__(message)
        self.component, self.program, self.slot, self.field = component, program, slot, field

    def with_prefix(self, prefix: str) -> ProgramError:
        return ProgramError(
            f"{prefix}{self}",
            component=self.component,
            program=self.program,
            slot=self.slot,
            field=self.field,
        )


def _num_consts(template: str) -> int:
    return max((int(j) + 1 for j in re.findall(r"\{c(\d)\}", template)), default=0)


# Per-op tables, indexed by op id.
_IN_KINDS = {
    "in1": np.array([op.in1 for op in ops_lib.OPS]),
    "in2": np.array([op.in2 for op in ops_lib.OPS]),
}
_OUT_KIND = np.array([op.out for op in ops_lib.OPS])
_NUM_USED_CONSTS = np.array([_num_consts(op.template) for op in ops_lib.OPS])
_KIND_NAME = {
    Kind.NONE: "none",
    Kind.SCALAR: "scalar",
    Kind.VECTOR: "vector",
    Kind.MATRIX: "matrix",
}
_RESERVED_NOTE = {
    Kind.SCALAR: " (s0 is the label and is never written)",
    Kind.VECTOR: " (v0 holds the features and is never written)",
}


def _field_kind(op: ops_lib.OpSpec, field: str) -> Kind:
    return {"in1": op.in1, "in2": op.in2, "out": op.out}[field]


# ------------------------------------------------------------------------------------------------
# Validation.


def _first(mask: np.ndarray) -> tuple[int, int] | None:
    """(program, slot) of the first True in a [N, L] mask, or None."""
    if not mask.any():
        return None
    n, s = divmod(int(np.argmax(mask.reshape(-1))), mask.shape[1])
    return n, s


def _shape_checked(program: Program, spec: ProgramSpec | None):
    """Checks leaf shapes and dtypes; returns [(code, consts, length)] and the batch shape."""
    if not isinstance(program, Program):
        raise ProgramError(f"expected a Program, got {type(program).__name__}")
    arrays, batch = [], None
    for c in COMPONENTS:
        code, consts, length = (np.asarray(x) for x in getattr(program, c))
        b = length.shape
        if spec is not None:
            size, where = spec.component(c).size, f" (L = spec.{c}.size)"
        else:
            size, where = (code.shape[-2] if code.ndim >= 2 else "L"), ""
        want = {
            "code": (code, np.int32, b + (size, 4), f"[..., {size}, 4]{where}"),
            "consts": (consts, np.float32, b + (size, 3), f"[..., {size}, 3]{where}"),
            "length": (length, np.int32, b, "[...]"),
        }
        for name, (x, dtype, shape, text) in want.items():
            if x.dtype != dtype or x.shape != shape:
                batch_note = f", where ... is the batch shape {b} of {c}.length" * (
                    name != "length"
                )
                raise ProgramError(
                    f"{c}.{name} must be {np.dtype(dtype).name} {text}{batch_note}; "
                    f"got {x.dtype} of shape {x.shape}",
                    component=c,
                    field=name,
                )
        if batch is not None and b != batch:
            raise ProgramError(f"components have different batch shapes: {batch} vs {c} {b}")
        batch = b
        arrays.append((code, consts, length))
    return arrays, batch


def _component_checks(c: str, code, consts, length, spec: ProgramSpec | None):
    """Per-check masks of one component: [(check, field, mask [N, L])] in report order.

    code [N, L, 4], consts [N, L, 3], length [N]. With spec None only the structure is checked
    (what the text and JSON forms need to be exact), not addresses, allowed ops or finiteness.
    """
    size = code.shape[1]
    active = np.arange(size) < np.clip(length, 0, size)[:, None]
    op = code[..., 0]
    known = active & (op >= 0) & (op < ops_lib.NUM_OPS)
    opc = np.where(known, op, 0)
    checks = [("unknown op", "op", active & ~known)]
    if spec is not None:
        allowed = np.isin(np.arange(ops_lib.NUM_OPS), spec.component(c).valid_ops)
        checks.append(("op not allowed", "op", known & ~allowed[opc]))
    lo = np.zeros(4, np.int64)
    hi = np.zeros(4, np.int64)
    for fi, field in enumerate(_CODE_FIELDS[1:], start=1):
        addr = code[..., fi]
        kind = (_OUT_KIND if field == "out" else _IN_KINDS[field])[opc]
        checks.append(("unused address", field, known & (kind == Kind.NONE) & (addr != 0)))
        if spec is not None:
            for k in (Kind.SCALAR, Kind.VECTOR, Kind.MATRIX):
                lo[k], hi[k] = spec.out_range(k) if field == "out" else (0, spec.bank_size(k))
            bad = (addr < lo[kind]) | (addr >= hi[kind])
            checks.append(("address range", field, known & (kind != Kind.NONE) & bad))
    for j, field in enumerate(_CONST_FIELDS):
        x = consts[..., j]
        if spec is not None:
            checks.append(("not finite", field, active & ~np.isfinite(x)))
        checks.append(("unused const", field, known & (j >= _NUM_USED_CONSTS[opc]) & (x != 0)))
    row = np.concatenate([code != 0, consts != 0], axis=-1)  # [N, L, 7]
    checks.append(("padding", None, ~active & row.any(-1)))
    return checks


def _message(check, field, c, n, s, code, consts, length, spec) -> tuple[str, str]:
    """(field, text) of one found error at program n, slot s."""
    if check == "length":
        return field, f"length {length[n]} is out of range [0, {code.shape[1]}]"
    row, x = code[n, s], consts[n, s]
    if check == "unknown op":
        return field, f"unknown opcode {row[0]} (op ids are 0..{ops_lib.NUM_OPS - 1})"
    if check == "padding":
        fi = int(np.argmax(np.concatenate([row != 0, x != 0])))
        value = row[fi] if fi < 4 else x[fi - 4]
        text = (
            f"padding slot (at or past length {length[n]}) must be an all-zero NO_OP row, "
            f"but {_ALL_FIELDS[fi]} is {value}"
        )
        return _ALL_FIELDS[fi], text
    op = ops_lib.OPS[row[0]]
    if check == "op not allowed":
        valid = ", ".join(map(str, spec.component(c).valid_ops))
        return field, f"op {op.id} ({op.name}) is not allowed in {c} (allowed: {valid})"
    if check in ("unused address", "address range"):
        a, kind = row[_CODE_FIELDS.index(field)], _field_kind(op, field)
        if check == "unused address":
            return field, f"unused address field is {a}, must be 0 ({op.name} takes no {field})"
        io = "output" if field == "out" else "input"
        lo, hi = spec.out_range(kind) if field == "out" else (0, spec.bank_size(kind))
        note = _RESERVED_NOTE.get(kind, "") if field == "out" and a == 0 else ""
        return field, f"{_KIND_NAME[kind]} {io} address {a} is out of range [{lo}, {hi}){note}"
    value = x[_CONST_FIELDS.index(field)]
    if check == "not finite":
        return field, f"constant {value} is not finite"
    used = _num_consts(op.template)
    return field, f"unused constant is {value}, must be 0 ({op.name} uses {used} of 3 constants)"


def _check(program: Program, spec: ProgramSpec | None, batched: bool | None) -> None:
    """Raises ProgramError for the first (program, component, slot, field) that is bad."""
    arrays, batch = _shape_checked(program, spec)
    if batched is not None and batched != (batch != ()):
        want = "a batched population" if batched else "one unbatched program"
        raise ProgramError(f"expected {want}, got batch shape {batch}")
    n_prog = int(np.prod(batch, dtype=np.int64))
    found = []  # (key, check, field, component, flat arrays); the smallest key is reported.
    for ci, (c, (code, consts, length)) in enumerate(zip(COMPONENTS, arrays, strict=True)):
        size = code.shape[-2]
        flat = (
            code.reshape(n_prog, size, 4),
            consts.reshape(n_prog, size, ops_lib.NUM_CONSTS),
            length.reshape(n_prog),
        )
        bad_length = ((flat[2] < 0) | (flat[2] > size))[:, None]
        checks = [("length", "length", bad_length)] + _component_checks(c, *flat, spec)
        for k, (check, field, mask) in enumerate(checks):
            if (hit := _first(mask)) is not None:
                slot = -1 if check == "length" else hit[1]
                fi = _ALL_FIELDS.index(field) if field in _ALL_FIELDS else 0
                found.append(((hit[0], ci, slot, fi, k), check, field, c, flat))
    if not found:
        return
    (n, _, slot, _, _), check, field, c, flat = min(found, key=lambda f: f[0])
    field, text = _message(check, field, c, n, slot, *flat, spec)
    slot = None if slot < 0 else slot
    index = None
    if batch:
        index = tuple(int(i) for i in np.unravel_index(n, batch))
        index = index[0] if len(index) == 1 else index
    where = (f"program {index}, " if batch else "") + c + ("" if slot is None else f" slot {slot}")
    if field not in ("op", "length"):
        where += f", field {field}"
    raise ProgramError(f"{where}: {text}", component=c, program=index, slot=slot, field=field)


def validate(program: Program, spec: ProgramSpec, *, batched: bool | None = None) -> None:
    """Raises `ProgramError` unless `program` is a valid program (or population) of `spec`.

    Args:
      program: a `Program`; code [..., L, 4] int32, consts [..., L, 3] float32, length [...] int32,
        with L = spec.<component>.size and the same batch shape `...` in every component.
      spec: the search space (address counts, slot capacities, allowed ops per component).
      batched: True requires a batch axis, False forbids one; None accepts either.
    """
    _check(program, spec, batched)


# ------------------------------------------------------------------------------------------------
# Text form.

# Unambiguous (digits, then an optional fraction): a number the line does not end after fails in
# linear time. `\d+\.?\d*` could split a digit run between its two repeats in n ways, so a long
# run that did not match took quadratic time (10,000 digits: 6.6 s).
_NUM_RE = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:inf(?:inity)?|nan))"
_ADDR_RE = r"[svm]\d+"
_LETTER_KIND = {k.letter: k for k in (Kind.SCALAR, Kind.VECTOR, Kind.MATRIX)}
_HEADER_RE = re.compile(r"def\s+(Setup|Predict|Learn)\s*\(\s*\)\s*:")


class _Form(NamedTuple):
    regex: re.Pattern
    template: str
    by_kinds: dict  # address kinds, in (o, a, b) order of those present -> op id


def _build_forms() -> tuple[_Form, ...]:
    """One regex per distinct template text; same-text ops are told apart by operand kinds."""
    forms: dict[str, _Form] = {}
    for op in ops_lib.OPS:
        kinds = []
        for ph, kind in (("{o}", op.out), ("{a}", op.in1), ("{b}", op.in2)):
            assert (ph in op.template) == (kind != Kind.NONE), op
            kinds += [kind] if kind != Kind.NONE else []
        key = re.sub(r"\s+", "", op.template)
        if key not in forms:
            parts = re.split(r"\{(\w+)\}", key)  # literal, name, literal, name, ...
            pattern = "".join(
                re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_NUM_RE if p[0] == 'c' else _ADDR_RE})"
                for i, p in enumerate(parts)
            )
            forms[key] = _Form(re.compile(pattern), op.template, {})
        assert tuple(kinds) not in forms[key].by_kinds, op
        forms[key].by_kinds[tuple(kinds)] = op.id
    return tuple(forms.values())


_FORMS = _build_forms()


def _format_float(x) -> str:
    return str(np.float32(x))  # Shortest text that round-trips the float32 value.


def format_instruction(ins: Instruction) -> str:
    """One instruction in the paper's notation, e.g. ``s3 = dot(v1, v0)`` or ``v1[0.375] = 0.5``."""
    ins = Instruction(*ins)
    if not 0 <= ins.op < ops_lib.NUM_OPS:
        raise ProgramError(f"unknown opcode {ins.op} (op ids are 0..64)", field="op")
    op = ops_lib.OPS[ins.op]
    consts = tuple(ins.consts) + (0.0,) * (ops_lib.NUM_CONSTS - len(ins.consts))
    return op.template.format(
        o=f"{op.out.letter}{ins.out}",
        a=f"{op.in1.letter}{ins.in1}",
        b=f"{op.in2.letter}{ins.in2}",
        **{f"c{j}": _format_float(x) for j, x in enumerate(consts)},
    )


def _parse_instruction(text: str) -> Instruction:
    """Parses one instruction; raises ValueError with the reason."""
    key = re.sub(r"\s+", "", text)
    for form in _FORMS:
        m = form.regex.fullmatch(key)
        if m is None:
            continue
        g = m.groupdict()
        kinds = tuple(_LETTER_KIND[g[p][0]] for p in ("o", "a", "b") if p in g)
        op_id = form.by_kinds.get(kinds)
        if op_id is None:
            shape = _describe(form.template, kinds)
            fits = ", ".join(
                f"{_describe(form.template, k)} ({ops_lib.OPS[i].name})"
                for k, i in form.by_kinds.items()
            )
            raise ValueError(f"no op has operand kinds {shape!r}; ops of this form: {fits}")
        if any(len(g[p]) > 11 for p in ("o", "a", "b") if p in g):
            raise ValueError("address too large")  # Before int(): it refuses > 4300 digits.
        addr = {p: int(g[p][1:]) if p in g else 0 for p in ("o", "a", "b")}
        if max(addr.values()) >= 2**31:
            raise ValueError("address too large")
        with np.errstate(over="ignore"):
            consts = tuple(float(np.float32(float(g[c]))) if c in g else 0.0 for c in _CONST_FIELDS)
        return Instruction(op_id, addr["a"], addr["b"], addr["o"], consts)
    raise ValueError("it matches no instruction form of azjax.ops (see each op's template)")


def _quote(line: str, limit: int = 60) -> str:
    """`line` quoted for an error message, cut to `limit` characters (a line can be huge)."""
    line = line.strip()
    return repr(line if len(line) <= limit else line[:limit] + "...")


def _describe(template: str, kinds) -> str:
    """A template with letters for addresses, e.g. 's = dot(v, v)' (kinds: out, in1, in2)."""
    letters = {p: Kind(k).letter for p, k in zip(("o", "a", "b"), kinds, strict=False)}
    return re.sub(r"\{(\w+)\}", lambda m: letters.get(m[1], m[1]), template)


def parse_instruction(text: str) -> Instruction:
    """The inverse of `format_instruction` (whitespace-insensitive)."""
    try:
        return _parse_instruction(text)
    except ValueError as e:
        raise ProgramError(f"cannot parse {_quote(text)}: {e}") from None


def format_program(program: Program, *, pruned: bool = True) -> str:
    """The original's readable layout of one unbatched program.

    By default the program is printed pruned: only the instructions that can affect the
    prediction, without dead code or `NoOp()` lines (`azjax.pruning`). The pruned text is for
    reading; re-parsed, its instructions may sit at other slots than in the program, which
    changes the draws of random-init ops (keyed by slot). `pruned=False` prints the program's
    first `length` slots as they are, the exact form `parse_program` turns back into `program`.

    Raises ProgramError if the text could not hold the program exactly (an unknown op, a non-zero
    unused field or padding slot). Address ranges and allowed ops are not checked: `validate`.
    """
    _check(program, None, batched=False)
    if pruned:
        program = pruning.prune(program, _covering_spec(program))
    lines = []
    for c in COMPONENTS:
        lines.append(f"def {c.capitalize()}():")
        comp = getattr(program, c)
        code, consts = np.asarray(comp.code), np.asarray(comp.consts)
        for i in range(int(comp.length)):
            if pruned and code[i, 0] == ops_lib.NO_OP:
                continue
            ins = Instruction(*(int(x) for x in code[i]), tuple(float(x) for x in consts[i]))
            lines.append("  " + format_instruction(ins))
    return "\n".join(lines) + "\n"


def _covering_spec(program: Program) -> ProgramSpec:
    """The smallest `ProgramSpec` whose banks hold every address `program` uses (at least the
    reserved s0, s1 and v0), for pruning a program printed without its spec."""
    top = {Kind.SCALAR: PREDICTION_SCALAR, Kind.VECTOR: FEATURES_VECTOR, Kind.MATRIX: 0}
    for c in COMPONENTS:
        comp = getattr(program, c)
        code = np.asarray(comp.code)[: int(comp.length)]
        for fi, field in enumerate(_CODE_FIELDS[1:], start=1):
            kinds = (_OUT_KIND if field == "out" else _IN_KINDS[field])[code[:, 0]]
            for kind in top:
                used = code[kinds == kind, fi]
                if used.size:
                    top[kind] = max(top[kind], int(used.max()))
    return ProgramSpec(
        num_scalars=top[Kind.SCALAR] + 1,
        num_vectors=top[Kind.VECTOR] + 1,
        num_matrices=top[Kind.MATRIX] + 1,
    )


def parse_program(text: str, spec: ProgramSpec) -> Program:
    """Parses `format_program`'s text into a validated program of `spec`.

    Blank lines, `#` comments and indentation are ignored; a missing `def ...():` section is an
    empty component. Errors name the line number and the line.
    """
    lists: dict[str, list[tuple[Instruction, int, str]]] = {}
    current = None
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if (m := _HEADER_RE.fullmatch(line)) is not None:
            current = m.group(1).lower()
            if current in lists:
                raise ProgramError(
                    f"line {lineno}: {_quote(line)}: component defined twice", component=current
                )
            lists[current] = []
            continue
        if current is None:
            raise ProgramError(
                f"line {lineno}: {_quote(line)}: instruction before any 'def Setup():'"
            )
        try:
            ins = _parse_instruction(line)
        except ValueError as e:
            raise ProgramError(f"line {lineno}: cannot parse {_quote(line)}: {e}") from None
        size = spec.component(current).size
        if len(lists[current]) >= size:
            raise ProgramError(
                f"line {lineno}: {_quote(line)}: too many instructions for {current} "
                f"(spec.{current}.size = {size})",
                component=current,
            )
        lists[current].append((ins, lineno, line))
    program = make_program(spec, **{c: [x[0] for x in v] for c, v in lists.items()})
    try:
        validate(program, spec, batched=False)
    except ProgramError as e:
        if e.component in lists and e.slot is not None and e.slot < len(lists[e.component]):
            _, lineno, line = lists[e.component][e.slot]
            raise e.with_prefix(f"line {lineno}: {_quote(line)}: ") from None
        raise
    return program


# ------------------------------------------------------------------------------------------------
# JSON form and files.


def program_to_json(program: Program) -> dict:
    """A JSON-ready dict (format `azjax.program/1`) of one unbatched program."""
    _check(program, None, batched=False)
    out = {"format": FORMAT}
    for c in COMPONENTS:
        comp = getattr(program, c)
        code, consts = np.asarray(comp.code), np.asarray(comp.consts)
        items = []
        for i in range(int(comp.length)):
            op = ops_lib.OPS[int(code[i, 0])]
            item = {"op": op.name}
            for fi, field in enumerate(_CODE_FIELDS[1:], start=1):
                if _field_kind(op, field) != Kind.NONE:
                    item[field] = int(code[i, fi])
            if n := _num_consts(op.template):
                item["consts"] = [float(x) for x in consts[i, :n]]
            items.append(item)
        out[c] = {"size": int(code.shape[0]), "instructions": items}
    return out


def _instruction_from_json(item) -> Instruction:
    if not isinstance(item, dict):
        raise ValueError(f"expected an object, got {type(item).__name__}")
    unknown = set(item) - {"op", "consts", *_CODE_FIELDS[1:]}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    if "op" not in item:
        raise ValueError("missing 'op'")
    op_name = item["op"]
    if isinstance(op_name, bool) or not isinstance(op_name, (str, int)):
        raise ValueError(f"'op' must be an op name, got {op_name!r}")
    op = ops_lib.OPS[ops_lib.op_ids([op_name])[0]]
    addr = {}
    for field in _CODE_FIELDS[1:]:
        uses = _field_kind(op, field) != Kind.NONE
        if uses != (field in item):
            verb = "needs" if uses else "does not use"
            raise ValueError(f"{op.name} {verb} {field!r}")
        x = item.get(field, 0)
        if isinstance(x, bool) or not isinstance(x, int) or not -(2**31) <= x < 2**31:
            raise ValueError(f"{field!r} must be an int32 address, got {x!r}")
        addr[field] = x
    n = _num_consts(op.template)
    values = item.get("consts", [])
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{op.name} needs 'consts' with {n} numbers, got {values!r}")
    try:
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in values):
            raise TypeError
        with np.errstate(over="ignore"):
            values = [float(np.float32(float(x))) for x in values]
    except (TypeError, OverflowError):
        raise ValueError(f"'consts' must hold float32 numbers, got {values!r}") from None
    consts = tuple(values) + (0.0,) * (ops_lib.NUM_CONSTS - n)
    return Instruction(op.id, addr["in1"], addr["in2"], addr["out"], consts)


def program_from_json(obj, spec: ProgramSpec) -> Program:
    """The inverse of `program_to_json`, validated against `spec`."""
    if not isinstance(obj, dict):
        raise ProgramError(f"JSON program must be an object, got {type(obj).__name__}")
    if obj.get("format") != FORMAT:
        raise ProgramError(f"JSON program 'format' must be {FORMAT!r}, got {obj.get('format')!r}")
    unknown = set(obj) - {"format", *COMPONENTS}
    if unknown:
        raise ProgramError(f"JSON program has unknown keys {sorted(unknown)}")
    lists = {}
    for c in COMPONENTS:
        comp = obj.get(c)
        if (
            not isinstance(comp, dict)
            or not isinstance(comp.get("instructions"), list)
            or not set(comp) <= {"size", "instructions"}
        ):
            raise ProgramError(
                f"JSON program: {c} must be an object with 'instructions'", component=c
            )
        items, size = comp["instructions"], spec.component(c).size
        if len(items) > size:
            raise ProgramError(
                f"JSON program: {c} has {len(items)} instructions; spec.{c}.size is {size}",
                component=c,
            )
        lists[c] = []
        for i, item in enumerate(items):
            try:
                lists[c].append(_instruction_from_json(item))
            except ValueError as e:
                raise ProgramError(
                    f"JSON program: {c} instruction {i}: {e}", component=c, slot=i
                ) from None
    program = make_program(spec, **lists)
    validate(program, spec, batched=False)
    return program


def save_program(path: str | os.PathLike, program: Program) -> None:
    """Writes one program as JSON (a `.json` suffix) or as text (any other suffix)."""
    if str(path).lower().endswith(".json"):
        text = json.dumps(program_to_json(program), indent=1) + "\n"
    else:
        text = format_program(program, pruned=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def load_program(path: str | os.PathLike, spec: ProgramSpec) -> Program:
    """Reads a program written by `save_program` (or by hand); errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ProgramError(f"{os.fspath(path)}: not a UTF-8 text file ({e})") from None
    try:
        if str(path).lower().endswith(".json"):
            try:
                obj = json.loads(text)
            except ValueError as e:  # JSONDecodeError, or an integer of over 4300 digits.
                raise ProgramError(f"malformed JSON: {e}") from None
            except RecursionError:  # The decoder recurses once per nested array or object.
                raise ProgramError("malformed JSON: nested too deeply") from None
            return program_from_json(obj, spec)
        return parse_program(text, spec)
    except ProgramError as e:
        raise e.with_prefix(f"{os.fspath(path)}: ") from None
