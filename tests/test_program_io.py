"""Tests for azjax.program_io: the validator and the text and JSON forms of programs."""

import json
import pickle
import re
import time

import numpy as np
import pytest

from azjax import ops
from azjax import program_io as pio
from azjax.ops import Kind
from azjax.program import (
    COMPONENTS,
    Component,
    ComponentSpec,
    Instruction,
    Program,
    ProgramSpec,
    index,
    instructions,
    make_program,
    stack,
    unstack,
)
from azjax.program_io import (
    ProgramError,
    format_instruction,
    format_program,
    load_program,
    parse_instruction,
    parse_program,
    program_from_json,
    program_to_json,
    save_program,
    validate,
)
from azjax.pruning import prune

FULL = ProgramSpec(
    num_scalars=20,
    num_vectors=20,
    num_matrices=20,
    setup=ComponentSpec(8, ops.ALL_OPS),
    predict=ComponentSpec(8, ops.ALL_OPS),
    learn=ComponentSpec(8, ops.ALL_OPS),
)
LINEAR_SPEC = ProgramSpec(num_scalars=5)  # The README's regressor uses s4.
LINEAR_TEXT = """\
def Setup():
  s2 = 0.001
def Predict():
  s1 = dot(v0, v1)
def Learn():
  s3 = s0 - s1
  s4 = s3 * s2
  v2 = s4 * v0
  v1 = v1 + v2
"""
I = Instruction
LINEAR = make_program(
    LINEAR_SPEC,
    setup=[I(56, out=2, consts=(0.001,))],
    predict=[I(27, 0, 1, 1)],
    learn=[I(2, 0, 1, 3), I(3, 3, 2, 4), I(18, 4, 0, 2), I(23, 1, 2, 1)],
)
# The same regressor within the demo's 4 scalars (s3 reused), for the default ProgramSpec().
DEMO = make_program(
    ProgramSpec(),
    setup=[I(56, out=2, consts=(0.001,))],
    predict=[I(27, 0, 1, 1)],
    learn=[I(2, 0, 1, 3), I(3, 3, 2, 3), I(18, 3, 0, 2), I(23, 1, 2, 1)],
)

_IN1 = np.array([op.in1 for op in ops.OPS])
_IN2 = np.array([op.in2 for op in ops.OPS])
_OUT = np.array([op.out for op in ops.OPS])
_NUM_CONSTS = np.array([len(set(re.findall(r"\{c\d\}", op.template))) for op in ops.OPS])


def random_consts(rng, shape):
    """float32 constants: a mix of U(-1, 1), random finite bit patterns and special values."""
    nice = rng.uniform(-1, 1, shape).astype(np.float32)
    bits = rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = np.where(np.isfinite(bits), bits, nice)
    special = np.array([-0.0, 1e-45, -3.4028235e38, 0.1, 1.0, 0.375, 1e-5], np.float32)
    special = special[rng.integers(0, len(special), shape)]
    pick = rng.integers(0, 3, shape)
    return np.choose(pick, [nice, bits, special]).astype(np.float32)


def random_fields(rng, spec, op):
    """Random valid (code [..., 4], consts [..., 3]) for an int array of op ids."""
    code = np.zeros(op.shape + (4,), np.int32)
    code[..., 0] = op
    for fi, table in ((1, _IN1), (2, _IN2), (3, _OUT)):
        for kind in (Kind.SCALAR, Kind.VECTOR, Kind.MATRIX):
            lo, hi = spec.out_range(kind) if fi == 3 else (0, spec.bank_size(kind))
            code[..., fi] = np.where(
                table[op] == kind, rng.integers(lo, hi, op.shape), code[..., fi]
            )
    used = np.arange(ops.NUM_CONSTS) < _NUM_CONSTS[op][..., None]
    consts = np.where(used, random_consts(rng, op.shape + (ops.NUM_CONSTS,)), np.float32(0))
    return code, consts.astype(np.float32)


def random_population(rng, spec, n):
    """n random valid programs of `spec` (ops uniform over valid_ops), as one batched Program."""
    comps = []
    for c in COMPONENTS:
        size = spec.component(c).size
        length = rng.integers(0, size + 1, n)
        active = np.arange(size) < length[:, None]
        op = np.where(active, rng.choice(spec.component(c).valid_ops, (n, size)), 0)
        comps.append(Component(*random_fields(rng, spec, op), length.astype(np.int32)))
    return Program(*comps)


def assert_same(a: Program, b: Program):
    """Bit-exact equality of two programs (consts compared as bits, so -0.0 != 0.0)."""
    for c in COMPONENTS:
        x, y = getattr(a, c), getattr(b, c)
        np.testing.assert_array_equal(x.code, y.code, err_msg=c)
        np.testing.assert_array_equal(x.length, y.length, err_msg=c)
        np.testing.assert_array_equal(x.consts.view(np.uint32), y.consts.view(np.uint32), c)
        assert x.code.dtype == np.int32 and x.consts.dtype == np.float32


def json_round_trip(program, spec):
    text = json.dumps(program_to_json(program), allow_nan=False)
    return program_from_json(json.loads(text), spec)


# ------------------------------------------------------------------------------------------------
# Text form of single instructions.


@pytest.mark.parametrize("op", ops.OPS, ids=lambda op: op.name)
def test_every_op_prints_and_parses_back(op):
    rng = np.random.default_rng(op.id)
    code, consts = random_fields(rng, FULL, np.full(30, op.id))
    for i in range(len(code)):
        ins = I(*(int(x) for x in code[i]), tuple(float(x) for x in consts[i]))
        text = format_instruction(ins)
        assert str(ins) == text
        back = parse_instruction(text)
        assert back == ins, text
        assert np.array_equal(np.float32(back.consts).view(np.uint32), consts[i].view(np.uint32))
        # Exactly one template form matches the printed text (no ambiguity between templates).
        key = re.sub(r"\s+", "", text)
        assert sum(f.regex.fullmatch(key) is not None for f in pio._FORMS) == 1, text
    if op.id != ops.NO_OP:
        assert len(set(map(tuple, code.tolist()))) > 1  # Addresses and constants did vary.


@pytest.mark.parametrize(
    "ins, text",
    [
        (I(0), "NoOp()"),
        (I(27, 1, 0, 3), "s3 = dot(v1, v0)"),
        (I(18, 4, 0, 2), "v2 = s4 * v0"),
        (I(29, 1, 0, 0), "m0 = s1 * m0"),
        (I(31, 0, 2, 1), "v1 = dot(m0, v2)"),
        (I(6, 3, 0, 2), "s2 = 1 / s3"),
        (I(16, 3, 0, 2), "v2 = heaviside(v3, 1.0)"),
        (I(56, out=2, consts=(0.001,)), "s2 = 0.001"),
        (I(56, out=2, consts=(-0.0,)), "s2 = -0.0"),
        (I(57, out=1, consts=(0.375, 0.5)), "v1[0.375] = 0.5"),
        (I(58, out=0, consts=(0.1, 0.9, -2.5)), "m0[0.1, 0.9] = -2.5"),
        (I(61, out=2, consts=(-0.53, 0.01)), "m2 = uniform(-0.53, 0.01, (n_features, n_features))"),
        (I(63, out=5, consts=(0.0, 1e-05)), "v5 = gaussian(0.0, 1e-05, n_features)"),
    ],
)
def test_instruction_text_matches_original_notation(ins, text):
    consts = tuple(float(np.float32(x)) for x in ins.consts) + (0.0,) * (3 - len(ins.consts))
    ins = ins._replace(consts=consts)
    assert format_instruction(ins) == text
    assert parse_instruction(text) == ins
    assert parse_instruction("  " + text.replace(" ", "   ") + " ") == ins


@pytest.mark.parametrize(
    "text, why",
    [
        ("v2 = dot(v1)", "matches no instruction form"),
        ("v2 = v0 * s4", r"no op has operand kinds 'v = v \* s'.*v = s \* v \(SCALAR_VECTOR"),
        ("v2 = dot(v1, v1)", r"'v = dot\(v, v\)'.*s = dot\(v, v\) \(VECTOR_INNER_PRODUCT_OP\)"),
        ("m1 = 0.5", "no op has operand kinds 'm = c0'"),
        ("s1 = x2 + s3", "matches no instruction form"),
        ("s1 = 0.5.5", "matches no instruction form"),
        ("s99999999999 = s0 + s1", "address too large"),
    ],
)
def test_parse_instruction_errors(text, why):
    with pytest.raises(ProgramError, match=f"cannot parse {re.escape(repr(text))}: .*{why}"):
        parse_instruction(text)


def test_format_instruction_rejects_unknown_op():
    with pytest.raises(ProgramError, match="unknown opcode 65"):
        format_instruction(I(65))


# ------------------------------------------------------------------------------------------------
# Whole programs: text and JSON.


def test_linear_regressor_text_is_the_original_layout():
    validate(LINEAR, LINEAR_SPEC)
    assert format_program(LINEAR) == LINEAR_TEXT
    assert_same(parse_program(LINEAR_TEXT, LINEAR_SPEC), LINEAR)
    assert_same(json_round_trip(LINEAR, LINEAR_SPEC), LINEAR)
    demo_text = format_program(DEMO)
    assert "  s3 = s3 * s2\n  v2 = s3 * v0\n" in demo_text
    assert_same(parse_program(demo_text, ProgramSpec()), DEMO)
    assert_same(json_round_trip(DEMO, ProgramSpec()), DEMO)


def test_linear_regressor_json_layout():
    obj = program_to_json(LINEAR)
    assert obj["format"] == "azjax.program/1"
    assert obj["setup"] == {
        "size": 10,
        "instructions": [
            {"op": "SCALAR_CONST_SET_OP", "out": 2, "consts": [float(np.float32(0.001))]}
        ],
    }
    assert obj["predict"]["instructions"] == [
        {"op": "VECTOR_INNER_PRODUCT_OP", "in1": 0, "in2": 1, "out": 1}
    ]
    assert [x["op"] for x in obj["learn"]["instructions"]] == [
        "SCALAR_DIFF_OP",
        "SCALAR_PRODUCT_OP",
        "SCALAR_VECTOR_PRODUCT_OP",
        "VECTOR_SUM_OP",
    ]


def test_parse_accepts_comments_blank_lines_and_noops():
    text = """
# A hand-written linear regressor.
def Setup():
    s2 = 0.001   # learning rate

def Predict():
  NoOp()
\ts1=dot( v0 ,v1 )
def Learn():  # comment after a header
  s3 = s0 - s1
      s4 = s3 * s2
  v2 = s4 * v0
  v1 = v1 + v2
  NoOp()
"""
    program = parse_program(text, LINEAR_SPEC)
    want = LINEAR._replace(
        predict=make_program(LINEAR_SPEC, predict=[I(0), I(27, 0, 1, 1)]).predict,
        learn=make_program(LINEAR_SPEC, learn=[*instructions(LINEAR.learn), I(0)]).learn,
    )
    assert_same(program, want)
    raw = format_program(program, pruned=False).splitlines()
    assert raw[3:5] == ["  NoOp()", "  s1 = dot(v0, v1)"]
    assert format_program(program) == LINEAR_TEXT  # Pruned: no NoOp() lines.


def test_missing_sections_are_empty_components():
    program = parse_program("def Predict():\n  s1 = dot(v0, v1)\n", LINEAR_SPEC)
    assert [int(getattr(program, c).length) for c in COMPONENTS] == [0, 1, 0]
    assert (
        format_program(program)
        == "def Setup():\ndef Predict():\n  s1 = dot(v0, v1)\ndef Learn():\n"
    )


# The demo's winner for seed 1, dead code and all, and what of it can affect the prediction.
DEMO_WINNER_TEXT = """\
def Setup():
  s3 = s2 - s2
  s1 = dot(v1, v2)
  s1 = s1 * s2
  s3 = s3 * s2
  s1 = s0 - s2
  s1 = s2 * s3
  s2 = s0 * s1
  s2 = s2 - s2
  v1 = v2 + v0
  s2 = dot(v1, v2)
def Predict():
  s1 = dot(v1, v0)
  s2 = dot(v2, v1)
def Learn():
  v2 = s3 * v0
  s3 = dot(v0, v1)
  s2 = s3 - s0
  s3 = s0 - s1
  v2 = s3 * v2
  v1 = v1 + v2
  s3 = 0.07744325
  v1 = v1 + v2
"""
DEMO_WINNER_PRUNED = """\
def Setup():
  s3 = s2 - s2
  s3 = s3 * s2
  v1 = v2 + v0
def Predict():
  s1 = dot(v1, v0)
def Learn():
  v2 = s3 * v0
  s3 = s0 - s1
  v2 = s3 * v2
  v1 = v1 + v2
  s3 = 0.07744325
  v1 = v1 + v2
"""


def test_format_program_prints_the_pruned_program_by_default():
    from azjax import reference, tasks

    program = parse_program(DEMO_WINNER_TEXT, ProgramSpec())
    assert format_program(program) == DEMO_WINNER_PRUNED
    assert format_program(program, pruned=False) == DEMO_WINNER_TEXT
    assert format_program(parse_program(DEMO_WINNER_PRUNED, ProgramSpec())) == DEMO_WINNER_PRUNED
    # The pruned text is the same algorithm.
    taskset, info = tasks.make_tasks(
        tasks.TaskSpec(kind="linear", num_train_examples=50, num_valid_examples=20)
    )
    task = tasks.single_task(taskset, info, 0)
    fitness = [
        reference.evaluate(parse_program(text, ProgramSpec()), task, spec=ProgramSpec()).fitness
        for text in (DEMO_WINNER_TEXT, DEMO_WINNER_PRUNED)
    ]
    assert fitness[0] == fitness[1] > 0.5


def test_pruned_printing_needs_no_spec():
    """Printing infers bank sizes from the addresses: the same live code as pruning with the
    program's real spec (20/20/20 addresses here)."""
    for program in unstack(random_population(np.random.default_rng(3), FULL, 100)):
        live = prune(program, FULL)
        want = []
        for c in COMPONENTS:
            want.append(f"def {c.capitalize()}():")
            want += ["  " + format_instruction(i) for i in instructions(getattr(live, c)) if i.op]
        assert format_program(program).splitlines() == want
        assert "NoOp()" not in format_program(program)


def test_random_population_round_trips_through_text_and_json():
    rng = np.random.default_rng(0)
    population = random_population(rng, FULL, 200)
    validate(population, FULL)
    validate(population, FULL, batched=True)
    seen = set()
    for program in unstack(population):
        seen |= {int(x) for c in COMPONENTS for x in getattr(program, c).code[:, 0]}
        text = format_program(program, pruned=False)
        assert_same(parse_program(text, FULL), program)
        assert_same(json_round_trip(program, FULL), program)
    assert seen == set(ops.ALL_OPS)  # The round trips covered every op.


def test_save_and_load_pick_the_form_by_suffix(tmp_path):
    population = random_population(np.random.default_rng(1), FULL, 3)
    for i, program in enumerate(unstack(population)):
        for name in (f"p{i}.json", f"p{i}.txt", f"p{i}.JSON", f"p{i}"):
            save_program(tmp_path / name, program)
            assert_same(load_program(tmp_path / name, FULL), program)
            assert_same(load_program(str(tmp_path / name), FULL), program)
    assert (tmp_path / "p0.txt").read_text().startswith("def Setup():\n")
    assert json.loads((tmp_path / "p0.JSON").read_text())["format"] == "azjax.program/1"


def test_load_errors_name_the_file(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"format": "azjax.program/1", ')
    with pytest.raises(ProgramError, match=r"bad\.json: malformed JSON"):
        load_program(bad_json, FULL)
    bad_text = tmp_path / "bad.txt"
    bad_text.write_text("def Setup():\n  s1 = 0.5\n  s2 = sqrt(s1)\n")
    with pytest.raises(ProgramError, match=r"bad\.txt: line 3: cannot parse 's2 = sqrt\(s1\)'"):
        load_program(bad_text, FULL)
    wrong_spec = tmp_path / "linear.txt"
    save_program(wrong_spec, LINEAR)
    with pytest.raises(ProgramError, match=r"linear\.txt: line 7: 's4 = s3 \* s2': learn slot 1"):
        load_program(wrong_spec, ProgramSpec())  # Only 4 scalars.
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProgramError, match=r"binary\.txt: not a UTF-8 text file"):
        load_program(binary, FULL)


def test_deeply_nested_json_is_a_one_line_program_error(tmp_path):
    """json.loads recurses per nesting level: 100,000 levels used to escape as a RecursionError."""
    nested = tmp_path / "nested.json"
    for text in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000):
        nested.write_text(text)
        with pytest.raises(ProgramError, match=r"nested\.json: malformed JSON: nested too deeply$"):
            load_program(nested, FULL)
    huge = tmp_path / "huge.json"
    huge.write_text('{"format": "azjax.program/1", "setup": ' + "1" * 5000 + "}")
    with pytest.raises(ProgramError, match=r"huge\.json: malformed JSON: Exceeds the limit"):
        load_program(huge, FULL)  # json.loads refuses integers of over 4300 digits.


@pytest.mark.parametrize(
    "line",
    [
        "s1 = {digits}x",  # A number the line does not end after.
        "s1 = 1.{digits}x",
        "s1 = 1e{digits}x",
        "v1[{digits}] = 2.0x",
        "s2 = s{digits} + s3",  # An address too long for int().
        "s1 = {digits}",  # Parses as inf: a bad constant.
    ],
)
def test_long_digit_runs_fail_fast_with_a_short_message(line):
    """20,000 digits: linear time (the old number regex took quadratic time, ~13 s here) and a
    message that quotes a cut line."""
    text = "def Setup():\n  " + line.format(digits="1" * 20_000) + "\n"
    start = time.perf_counter()
    with pytest.raises(ProgramError, match=r"^line 2: ") as err:
        parse_program(text, FULL)
    assert time.perf_counter() - start < 1.0
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# Parse errors name the line.


def _numbered(*lines):
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "lines, match",
    [
        (
            (
                "def Setup():",
                "  s2 = 0.001",
                "def Predict():",
                "  s1 = dot(v0, v1)",
                "def Learn():",
                "  s3 = s0 - s1",
                "  v2 = dot(v1)",
            ),
            r"^line 7: cannot parse 'v2 = dot\(v1\)': ",
        ),
        (
            ("# header", "", "def Predict():", "  s1 = uniform(0.0, 1.0)  # not a demo op"),
            r"^line 4: 's1 = uniform\(0.0, 1.0\)': predict slot 0: op 59 \(SCALAR_UNIFORM_SET_OP\) "
            r"is not allowed in predict \(allowed: 0, 2, 3, 18, 23, 27, 56\)$",
        ),
        (
            ("def Predict():", "  s1 = dot(v0, v1)", "", "  s1 = s1 + s1", "  s1 = s1 - s1"),
            r"^line 5: 's1 = s1 - s1': too many instructions for predict \(spec.predict.size = 2\)",
        ),
        (
            ("def Setup():", "  s2 = 0.001", "def Learn():", "  s7 = s0 - s1"),
            r"^line 4: 's7 = s0 - s1': learn slot 0, field out: scalar output address 7 is out of "
            r"range \[1, 5\)$",
        ),
        (
            ("def Learn():", "  s3 = s0 - s1", "  s0 = s3 * s1"),
            r"^line 3: 's0 = s3 \* s1': learn slot 1, field out: scalar output address 0 is out of "
            r"range \[1, 5\) \(s0 is the label and is never written\)$",
        ),
        (
            ("def Learn():", "  s3 = s0 - s1", "", "  v1 = v1 + v9"),
            r"^line 4: 'v1 = v1 \+ v9': learn slot 1, field in2: vector input address 9 is out of "
            r"range \[0, 3\)$",
        ),
        (("s1 = dot(v0, v1)",), r"^line 1: 's1 = dot\(v0, v1\)': instruction before any"),
        (("def Setup():", "def Predict():", "def Setup():"), r"^line 3: .*defined twice"),
        (("def Setup():", "  s2 = 1e40"), r"^line 2: 's2 = 1e40': setup slot 0, field c0: .*inf"),
    ],
)
def test_parse_errors_name_the_line(lines, match):
    with pytest.raises(ProgramError, match=match):
        parse_program(_numbered(*lines), LINEAR_SPEC)


# ------------------------------------------------------------------------------------------------
# The validator.


def _edit(program, component, **arrays):
    """A copy of `program` with some leaves of one component replaced or edited in place."""
    comp = getattr(program, component)
    comp = Component(*(np.array(x) for x in comp))
    edits = {k: v(getattr(comp, k).copy()) if callable(v) else v for k, v in arrays.items()}
    return program._replace(**{component: comp._replace(**edits)})


def _at(index, value):
    def edit(x):
        x[index] = value
        return x

    return edit


_S0 = r" \(s0 is the label and is never written\)$"
_V0 = r" \(v0 holds the features and is never written\)$"
_PAD = r"padding slot \(at or past length (\d)\) must be an all-zero NO_OP row, but "
BAD_PROGRAMS = [  # (component, edits of its leaves, message)
    (
        "setup",
        dict(code=lambda x: x.astype(np.int64)),
        r"setup\.code must be int32 \[\.\.\., 10, 4\]",
    ),
    ("learn", dict(code=np.zeros((9, 4), np.int32)), r"learn\.code must be int32 .*\(9, 4\)"),
    ("predict", dict(consts=lambda x: x.astype(np.float64)), r"predict\.consts must be float32"),
    ("predict", dict(length=np.int64(1)), r"predict\.length must be int32"),
    ("predict", dict(length=np.ones(3, np.int32)), r"predict\.code must be .* batch shape \(3,\)"),
    (
        "predict",
        dict(code=_at((0, 0), 99)),
        r"^predict slot 0: unknown opcode 99 \(op ids are 0\.\.64\)$",
    ),
    ("predict", dict(code=_at((0, 0), -1)), r"^predict slot 0: unknown opcode -1"),
    (
        "predict",
        dict(code=_at(1, (61, 0, 0, 0)), length=np.int32(2)),
        r"^predict slot 1: op 61 \(MATRIX_UNIFORM_SET_OP\) is not allowed in predict "
        r"\(allowed: 0, 2, 3, 18, 23, 27, 56\)$",
    ),
    (
        "learn",
        dict(code=_at((0, 2), 5)),
        r"^learn slot 0, field in2: scalar input address 5 is out of range \[0, 5\)$",
    ),
    (
        "learn",
        dict(code=_at((2, 1), -1)),
        r"^learn slot 2, field in1: scalar input address -1 is out of range",
    ),
    (
        "learn",
        dict(code=_at((2, 2), 3)),
        r"^learn slot 2, field in2: vector input address 3 is out of range \[0, 3\)$",
    ),
    (
        "learn",
        dict(code=_at((0, 3), 0)),
        r"^learn slot 0, field out: scalar output address 0 is out of range \[1, 5\)" + _S0,
    ),
    (
        "learn",
        dict(code=_at((3, 3), 0)),
        r"^learn slot 3, field out: vector output address 0 is out of range \[1, 3\)" + _V0,
    ),
    (
        "predict",
        dict(code=_at((0, 3), 0)),
        r"^predict slot 0, field out: scalar output address 0 .*" + _S0,
    ),
    (
        "setup",
        dict(code=_at((0, 1), 3)),
        r"^setup slot 0, field in1: unused address field is 3, must be 0 "
        r"\(SCALAR_CONST_SET_OP takes no in1\)$",
    ),
    ("learn", dict(length=np.int32(9)), r"^learn: length 9 is out of range \[0, 8\]$"),
    ("learn", dict(length=np.int32(-1)), r"^learn: length -1 is out of range \[0, 8\]$"),
    ("learn", dict(code=_at(6, (23, 1, 1, 1))), r"^learn slot 6: " + _PAD + "op is 23$"),
    ("learn", dict(consts=_at((7, 2), 0.5)), r"^learn slot 7, field c2: " + _PAD + r"c2 is 0\.5$"),
    ("learn", dict(length=np.int32(3)), r"^learn slot 3: " + _PAD + "op is 23$"),
    (
        "setup",
        dict(consts=_at((0, 0), np.nan)),
        r"^setup slot 0, field c0: constant nan is not finite$",
    ),
    (
        "setup",
        dict(consts=_at((0, 0), -np.inf)),
        r"^setup slot 0, field c0: constant -inf is not finite$",
    ),
    (
        "setup",
        dict(consts=_at((0, 2), np.inf)),
        r"^setup slot 0, field c2: constant inf is not finite$",
    ),
    (
        "predict",
        dict(consts=_at((0, 1), 0.5)),
        r"^predict slot 0, field c1: unused constant is 0\.5, must be 0 "
        r"\(VECTOR_INNER_PRODUCT_OP uses 0 of 3 constants\)$",
    ),
]


@pytest.mark.parametrize("component, edit, match", BAD_PROGRAMS)
def test_validator_rejects_bad_programs(component, edit, match):
    validate(LINEAR, LINEAR_SPEC)
    bad = _edit(LINEAR, component, **edit)
    with pytest.raises(ProgramError, match=match) as info:
        validate(bad, LINEAR_SPEC)
    assert info.value.component == component
    assert info.value.program is None


def test_validator_reports_the_first_offender_of_a_population():
    population = stack([DEMO] * 40)
    validate(population, ProgramSpec())
    population.learn.code[30, 0, 3] = 0  # A later program.
    population.learn.code[17, 5, 0] = 23  # Padding, after the reported slot.
    population.learn.code[17, 3, 3] = 0  # The reported one: program 17, learn slot 3, out.
    with pytest.raises(ProgramError) as info:
        validate(population, ProgramSpec())
    assert str(info.value) == (
        "program 17, learn slot 3, field out: vector output address 0 is out of range [1, 3) "
        "(v0 holds the features and is never written)"
    )
    assert (info.value.component, info.value.program, info.value.slot, info.value.field) == (
        "learn",
        17,
        3,
        "out",
    )
    population.learn.code[17, 1, 3] = 0  # An earlier slot of the same program.
    msg = "program 17, learn slot 1, field out: scalar output address 0 is out of range [1, 4) "
    with pytest.raises(ProgramError, match=re.escape(msg) + r"\(s0 is the label"):
        validate(population, ProgramSpec())
    population.predict.consts[17, 0, 2] = 1.0  # An earlier component of the same program.
    with pytest.raises(ProgramError, match=r"^program 17, predict slot 0, field c2: unused"):
        validate(population, ProgramSpec())
    population.setup.length[9] = 11  # An earlier program.
    with pytest.raises(
        ProgramError, match=r"^program 9, setup: length 11 is out of range \[0, 10\]"
    ):
        validate(population, ProgramSpec())
    # Validating the population one program at a time finds the same first program.
    bad = [i for i in range(40) if _raises(index(population, i), ProgramSpec())]
    assert bad == [9, 17, 30]


def _raises(program, spec):
    try:
        validate(program, spec)
    except ProgramError:
        return True
    return False


def test_validator_multi_axis_batch_and_batched_flag():
    population = random_population(np.random.default_rng(2), FULL, 12)
    grid = Program(
        *(Component(*(x.reshape((3, 4) + x.shape[1:]) for x in comp)) for comp in population)
    )
    validate(grid, FULL)
    grid.learn.length[2, 1] = 9
    with pytest.raises(ProgramError, match=r"^program \(2, 1\), learn: length 9") as info:
        validate(grid, FULL)
    assert info.value.program == (2, 1)
    with pytest.raises(
        ProgramError, match=r"expected one unbatched program, got batch shape \(12,\)"
    ):
        validate(population, FULL, batched=False)
    with pytest.raises(ProgramError, match=r"expected a batched population, got batch shape \(\)"):
        validate(LINEAR, LINEAR_SPEC, batched=True)
    validate(LINEAR, LINEAR_SPEC, batched=False)
    mixed = population._replace(setup=index(population, np.arange(5)).setup)
    with pytest.raises(ProgramError, match=r"different batch shapes: \(5,\) vs predict \(12,\)"):
        validate(mixed, FULL)
    with pytest.raises(ProgramError, match="expected a Program, got tuple"):
        validate(tuple(LINEAR), LINEAR_SPEC)


def test_validator_checks_the_ops_of_each_component():
    spec = FULL.replace(predict=ComponentSpec(8, (27,), extra_ops=(23,)))
    population = random_population(np.random.default_rng(3), spec, 50)
    validate(population, spec)
    with pytest.raises(
        ProgramError, match=r"^program \d+, predict slot \d+: op \d+ .* is not allowed"
    ):
        validate(population, spec.replace(predict=ComponentSpec(8, (27,))))


def test_program_error_is_a_value_error_and_pickles():
    with pytest.raises(ValueError):
        validate(_edit(LINEAR, "learn", length=np.int32(9)), LINEAR_SPEC)
    err = ProgramError("x", component="learn", program=3, slot=1, field="out")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.component, back.program, back.slot, back.field) == (
        "x",
        "learn",
        3,
        1,
        "out",
    )


# ------------------------------------------------------------------------------------------------
# Printing and JSON refuse what they cannot hold exactly; JSON input is checked.


def test_format_and_json_refuse_inexact_programs():
    with pytest.raises(ProgramError, match="expected one unbatched program"):
        format_program(stack([LINEAR, LINEAR]))
    with pytest.raises(ProgramError, match="expected one unbatched program"):
        program_to_json(stack([LINEAR, LINEAR]))
    junk = _edit(LINEAR, "predict", consts=_at((0, 0), 0.25))
    with pytest.raises(ProgramError, match=r"predict slot 0, field c0: unused constant is 0\.25"):
        format_program(junk)
    with pytest.raises(ProgramError, match=r"predict slot 0, field c0: unused constant is 0\.25"):
        program_to_json(junk)
    # Spec matters (addresses, allowed ops) are not needed to print: s0 output prints.
    s0_out = _edit(LINEAR, "learn", code=_at((0, 3), 0))
    assert "  s0 = s0 - s1\n" in format_program(s0_out, pruned=False)
    assert "s0 = " not in format_program(s0_out)  # The harness overwrites s0: dead.


def _json_with(component, i, **changes):
    obj = program_to_json(LINEAR)
    item = obj[component]["instructions"][i]
    for k, v in changes.items():
        if v is None:
            del item[k]
        else:
            item[k] = v
    return obj


BAD_JSON = [  # (JSON object, message)
    ([], "JSON program must be an object, got list"),
    ({**program_to_json(LINEAR), "format": "x/0"}, "'format' must be 'azjax.program/1', got 'x/0'"),
    ({**program_to_json(LINEAR), "extra": 1}, r"unknown keys \['extra'\]"),
    ({k: v for k, v in program_to_json(LINEAR).items() if k != "learn"}, "learn must be an object"),
    (_json_with("learn", 2, in3=1), r"learn instruction 2: unknown keys \['in3'\]"),
    (_json_with("learn", 2, op="VECTOR_MAGIC_OP"), "learn instruction 2: unknown op name"),
    (_json_with("learn", 2, op=None), "learn instruction 2: missing 'op'"),
    (_json_with("learn", 2, in2=None), "learn instruction 2: SCALAR_VECTOR_PRODUCT_OP needs 'in2'"),
    (_json_with("predict", 0, consts=[0.5]), "predict instruction 0: .* needs 'consts' with 0"),
    (_json_with("setup", 0, in1=0), "setup instruction 0: SCALAR_CONST_SET_OP does not use 'in1'"),
    (_json_with("setup", 0, consts=[]), "setup instruction 0: .* needs 'consts' with 1 numbers"),
    (_json_with("setup", 0, consts=["0.5"]), "setup instruction 0: 'consts' must hold float32"),
    (_json_with("setup", 0, out=1.0), "setup instruction 0: 'out' must be an int32 address"),
    (_json_with("setup", 0, out=True), "setup instruction 0: 'out' must be an int32 address"),
    (_json_with("setup", 0, out=2**40), "setup instruction 0: 'out' must be an int32 address"),
    (
        _json_with("setup", 0, consts=[1e300]),
        r"^setup slot 0, field c0: constant inf is not finite",
    ),
    (_json_with("learn", 1, out=5), r"^learn slot 1, field out: scalar output address 5 is out of"),
    (
        _json_with("predict", 0, op="SCALAR_SUM_OP"),
        r"^predict slot 0: op 1 \(SCALAR_SUM_OP\) is not",
    ),
]


@pytest.mark.parametrize("obj, match", BAD_JSON)
def test_program_from_json_errors(obj, match):
    with pytest.raises(ProgramError, match=match):
        program_from_json(obj, LINEAR_SPEC)


def test_program_from_json_checks_the_capacity_not_the_saved_size():
    obj = program_to_json(LINEAR)
    small = LINEAR_SPEC.replace(learn=ComponentSpec(4, ops.DEMO_OPS))
    loaded = program_from_json(obj, small)
    assert loaded.learn.code.shape == (4, 4)
    assert format_program(loaded) == LINEAR_TEXT
    with pytest.raises(ProgramError, match=r"learn has 4 instructions; spec\.learn\.size is 3"):
        program_from_json(obj, LINEAR_SPEC.replace(learn=ComponentSpec(3, ops.DEMO_OPS)))
