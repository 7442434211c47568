"""A property of the whole `miner` CLI, against the in-memory fake service: for generated argument lists of every
subcommand, no exception escapes `main`, the exit code is the one the table of schema/errors.py gives for the case,
and a failure is exactly one line on stderr (naming the flag when a flag is at fault)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.cli import SPEC_FLAGS, main
from client.export import SCHEMA
from client.models import JobStatus
from schema.errors import ERRORS, ExitCode, exit_code_for

from .fake_service import GENOME, FakeService, Refused

STATUSES = (JobStatus.FINISHED, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED)
# what each job command exits with for a job in each status (None: not generated, e.g. following a running job,
# which the fake never ends)
BY_STATUS = {
    "show": {JobStatus.FINISHED: 0, JobStatus.RUNNING: 0, JobStatus.FAILED: 4, JobStatus.CANCELLED: 4},
    "result": {JobStatus.FINISHED: 0, JobStatus.RUNNING: 2, JobStatus.FAILED: 4, JobStatus.CANCELLED: 4},
    "export": {JobStatus.FINISHED: 0, JobStatus.RUNNING: 2, JobStatus.FAILED: 4, JobStatus.CANCELLED: 4},
    "compare": {JobStatus.FINISHED: 0, JobStatus.RUNNING: 2, JobStatus.FAILED: 4, JobStatus.CANCELLED: 4},
    "follow": {JobStatus.FINISHED: 0, JobStatus.FAILED: 4, JobStatus.CANCELLED: 4},
    "cancel": {JobStatus.FINISHED: 2, JobStatus.RUNNING: 0, JobStatus.FAILED: 2, JobStatus.CANCELLED: 2},
}
GOOD = {"--population": st.integers(4, 16), "--generations": st.integers(1, 3),
        "--risk": st.sampled_from(["low", "HIGH"]),
        "--seed": st.integers(0, 2**63 - 1), "--holdout": st.floats(0, 0.5), "--fee-bps": st.floats(0, 1000),
        "--slippage-bps": st.floats(0, 1000), "--initial-cash": st.floats(1, 1e12), "--folds": st.integers(1, 20),
        "--min-trades": st.integers(0, 10_000), "--permutations": st.integers(0, 3), "--islands": st.integers(1, 64),
        "--hall-of-fame": st.integers(1, 100), "--evaluator": st.just("balanced")}
BAD = {"--population": st.integers(-5, 3), "--generations": st.integers(max_value=0), "--risk": st.just("wild"),
       "--seed": st.integers(max_value=-1), "--holdout": st.floats(0.51, 10), "--fee-bps": st.floats(-1e6, -0.01),
       "--slippage-bps": st.floats(1000.5, 1e9), "--initial-cash": st.floats(-10, 0.99), "--folds": st.integers(21),
       "--min-trades": st.integers(max_value=-1), "--permutations": st.integers(1000), "--islands": st.integers(65),
       "--hall-of-fame": st.integers(max_value=0), "--dataset": st.just("")}
assert set(GOOD) | {"--dataset"} == {spec_flag.flag for spec_flag in SPEC_FLAGS}  # every JobSpec field is tried


@st.composite
def submit_case(draw):
    flags = draw(st.lists(st.sampled_from(sorted(GOOD)), unique=True, max_size=4))
    bad = draw(st.lists(st.sampled_from(sorted(BAD)), unique=True, max_size=2))
    argv = ["submit", "--dataset", "synthetic"]
    for flag in flags:
        argv += [flag, str(draw(GOOD[flag]))]
    for flag in bad:
        argv += [flag, str(draw(BAD[flag]))]
    if draw(st.booleans()):
        argv.append("--follow")
    return argv, ExitCode.USAGE if bad else ExitCode.OK, bad


@st.composite
def job_case(draw):
    command = draw(st.sampled_from(sorted(BY_STATUS)))
    statuses = [s for s in STATUSES if s in BY_STATUS[command]]
    kind = draw(st.sampled_from(["id", "prefix", "unknown", "ambiguous"]))
    status = draw(st.sampled_from(statuses))
    index = STATUSES.index(status) + 1
    job = {"id": f"job{index}", "prefix": f"job{index}"[:4], "ambiguous": "jo",
           "unknown": draw(st.text(min_size=1, max_size=8).filter(lambda t: not t.startswith(("j", "-"))))}[kind]
    extra = ["--json"] if command in ("show", "result") and draw(st.booleans()) else []
    expected = BY_STATUS[command][status] if kind in ("id", "prefix") else ExitCode.USAGE
    return [command, job, *extra], expected, []


STRATEGY_FILES = {  # what a STRATEGY.json holds (the files are in the test's working folder), and whether it is taken
    "genome.json": (json.dumps(GENOME), True),
    "document.json": (json.dumps({"schema": SCHEMA, "genome": GENOME}), True),
    "not_json.json": ("{genome", False), "list.json": ("[1]", False),
    "wrong_schema.json": ('{"direction": "up"}', False),
    "other_document.json": (json.dumps({"schema": "strategy-miner/strategy/9", "genome": GENOME}), False)}
BACKTEST_GOOD = {"--start": st.sampled_from(["1970-01-01", "1970-01-01T02:00:00Z", "3600"]),
                 "--end": st.sampled_from(["1970-01-04", "1970-01-04T11:20:00+00:00", "300000"]),
                 **{flag: GOOD[flag] for flag in ("--fee-bps", "--slippage-bps", "--initial-cash")}}
BACKTEST_BAD = {"--start": st.sampled_from(["yesterday", "2025-13-01"]), "--end": st.just("noon"),
                "--dataset": st.just(""), "--rank": st.integers(max_value=0),
                **{flag: BAD[flag] for flag in ("--fee-bps", "--slippage-bps", "--initial-cash")}}
REFUSED_BY_THE_SERVICE = {"--start": st.just("1990-01-01"),  # outside the fake's data
                          "--end": st.sampled_from(["1970-01-01T01:00", "1969-12-31"]),  # 12 bars; before the data
                          "--dataset": st.just("nope")}


@st.composite
def backtest_case(draw):
    """A strategy file (good or not) or a job (in any status), with good flags, and maybe a bad one that the CLI
    refuses before reading anything or one that the service refuses once the strategy is read."""
    argv = ["backtest"]
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(STRATEGY_FILES)))
        argv.append(name)
        expected = ExitCode.OK if STRATEGY_FILES[name][1] else ExitCode.USAGE
    else:
        status = draw(st.sampled_from(STATUSES))
        argv.append(f"job{STATUSES.index(status) + 1}")
        expected = BY_STATUS["result"][status]
        if draw(st.booleans()):
            argv += ["--rank", "1"]
    argv += ["--dataset", "synthetic"]
    kind = draw(st.sampled_from(["good", "bad", "refused"]))
    bad = draw(st.sampled_from(sorted(BACKTEST_BAD if kind == "bad" else REFUSED_BY_THE_SERVICE)))
    if kind == "good" or (bad == "--rank" and argv[1] in STRATEGY_FILES):  # --rank with a file: refused anyway
        bad = None
    # a bad time with a good other one could be refused as out of order, naming the other
    flags = draw(st.lists(st.sampled_from(sorted(set(BACKTEST_GOOD) - {"--start", "--end"} if bad in (
        "--start", "--end") else BACKTEST_GOOD)), unique=True, max_size=3))
    for flag in flags:
        argv += [flag, str(draw(BACKTEST_GOOD[flag]))]
    if bad:
        argv += [bad, str(draw((BACKTEST_BAD if kind == "bad" else REFUSED_BY_THE_SERVICE)[bad]))]
    if draw(st.booleans()):
        argv.append("--json")
    if bad and kind == "bad":  # refused by the CLI in the flag's words, before the file or the job is read
        return argv, ExitCode.USAGE, [bad]
    if bad and expected == ExitCode.OK:  # the strategy is fine: the service refuses the flag, naming it
        return argv, ExitCode.USAGE, [] if bad == "--dataset" else [bad]
    return argv, expected, []


@st.composite
def listing_case(draw):
    argv = draw(st.sampled_from([["jobs"], ["datasets"], ["datasets", "list"], ["cluster"], ["evaluator"],
                                 ["evaluator", "list"]]))
    argv = [*argv, *draw(st.sampled_from([[], ["--json"]]))]
    if argv[0] == "jobs" and draw(st.booleans()):
        limit = draw(st.integers(-5, 1005))
        return [*argv, "--limit", str(limit)], ExitCode.OK if 1 <= limit <= 1000 else ExitCode.USAGE, ["--limit"]
    return argv, ExitCode.OK, []


@st.composite
def noise_case(draw):
    """Any words after any command: never a traceback, whatever they mean."""
    command = draw(st.sampled_from(["submit", "follow", "jobs", "show", "result", "export", "compare", "cancel",
                                    "cluster", "evaluator", "datasets", "backtest", "nope"]))
    words = draw(st.lists(st.one_of(st.text(max_size=6), st.sampled_from(["--json", "--limit", "--url", "-x",
                                                                           "--population", "job1", "push"])),
                          max_size=4))
    return [command, *words], None, []


@pytest.fixture
def service(monkeypatch, tmp_path):
    monkeypatch.setenv("MINER_URL", FakeService.url)
    monkeypatch.setenv("MINER_TOKEN", "test-token")
    monkeypatch.setenv("MINER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("client.api.RECONNECT_DELAYS_S", (0.0,))
    for name, (content, _) in STRATEGY_FILES.items():  # the strategy files backtest cases name
        (tmp_path / name).write_text(content)
    monkeypatch.chdir(tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(submit_case(), job_case(), listing_case(), backtest_case(), noise_case()),
       refusal=st.one_of(st.none(), st.sampled_from(sorted(ERRORS))))
def test_every_command_line_ends_with_its_exit_code_and_at_most_one_line(service, capsys, case, refusal):
    argv, expected, bad_flags = case
    fake = FakeService()
    for status in STATUSES:
        fake.add_job(status)
    if refusal and expected is not None and expected != ExitCode.USAGE:  # refused by the service, not by the CLI
        fake.refusal = Refused(ERRORS[refusal], f"refused with {refusal}")
        expected = exit_code_for(ERRORS[refusal].status)
        bad_flags = []  # the request was valid: the service's refusal names no flag
    capsys.readouterr()
    code = main(argv, transport=fake.transport, open_stream=fake.open_stream)  # no exception may escape
    err = capsys.readouterr().err
    assert code in set(ExitCode)
    if expected is not None:
        assert code == expected, (argv, err)
    if code == ExitCode.OK:
        assert err == ""
    else:
        assert err.count("\n") == 1 and err.startswith("error: "), (argv, err)
        if bad_flags and code == ExitCode.USAGE:  # the flag at fault is named (argparse stops at the first)
            assert any(flag in err for flag in bad_flags), (argv, err)
