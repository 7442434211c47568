"""The `miner` CLI and MinerClient against the in-memory fake service: outputs and exit codes of every command,
`follow` included, without Ray (the same commands against the real service: test_cli.py)."""

from __future__ import annotations

import io
import json
import re

import httpx
import pytest

from client import MinerClient
from client.cli import glue_secrets, main
from client.models import BestSoFar, JobSpec, JobStatus
from schema.errors import ERRORS, ExitCode

from .fake_service import METRICS, STRATEGY, FakeService, Refused, add_ended_early


@pytest.fixture
def miner(fake):
    def run(*argv: str) -> int:
        return main(list(argv), transport=fake.transport, open_stream=fake.open_stream)

    return run


def sent_specs(fake: FakeService) -> list[dict]:
    return [json.loads(r.content) for r in fake.requests if (r.method, r.url.path) == ("POST", "/v1/jobs")]


# ---- submit and follow ---------------------------------------------------------------------------------------

def test_submit_queues_the_spec_with_a_key_and_prints_the_job(miner, fake, capsys):
    assert miner("submit", "--dataset", "synthetic", "--population", "12", "--risk", "low", "--seed", "7") == 0
    assert "submitted job job1 (12 x 30 on synthetic)" in capsys.readouterr().out
    (spec,) = sent_specs(fake)
    assert spec["population"] == 12 and spec["risk"] == "LOW" and "costs" not in spec and "evaluator" not in spec
    assert fake.requests[0].headers["Idempotency-Key"]


@pytest.mark.parametrize(("flags", "costs"), [
    (["--fee-bps", "10"], {"fee_bps": 10.0}),
    (["--slippage-bps", "2"], {"slippage_bps": 2.0}),
    (["--fee-bps", "10", "--slippage-bps", "2"], {"fee_bps": 10.0, "slippage_bps": 2.0})])
def test_costs_not_given_are_left_to_the_service(miner, fake, flags, costs):
    assert miner("submit", "--dataset", "synthetic", *flags) == 0
    assert sent_specs(fake)[0]["costs"] == costs


@pytest.mark.parametrize(("flags", "words"), [
    (["--population", "1"], "error: --population 1: must be between 4 and 100000"),
    (["--fee-bps", "-1"], "error: --fee-bps -1.0: must be between 0 and 1000"),
    (["--slippage-bps", "-1"], "error: --slippage-bps -1.0: must be between 0 and 1000"),
    (["--initial-cash", "0"], "error: --initial-cash 0.0: must be between 1 and 1e+12"),
    (["--holdout", "0.9"], "error: --holdout 0.9: must be between 0 and 0.5"),
    (["--population", "x"], "error: --population: x is not a whole number"),
    (["--risk", "wild"], "error: --risk: invalid choice: 'WILD'"),
    (["--dataset", ""], "error: --dataset '': must be 1 to 200 characters"),
    (["--pop", "8"], "error: unrecognized arguments: --pop 8")])
def test_a_bad_value_is_refused_in_the_flag_s_words_on_one_line(miner, fake, capsys, flags, words):
    assert miner("submit", "--dataset", "synthetic", *flags) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1
    assert fake.requests == []


def test_every_job_spec_field_has_a_flag_with_its_default_in_help(miner, fake, capsys):
    assert miner("submit", "--dataset", "synthetic", "--initial-cash", "5000", "--islands", "2", "--min-trades", "5",
                 "--folds", "3", "--evaluator", "balanced") == 0
    sent = sent_specs(fake)[0]
    assert sent["costs"] == {"initial_cash": 5000.0}
    assert (sent["islands"], sent["min_trades"], sent["folds"]) == (2, 5, 3)
    assert miner("submit", "--help") == 0
    help_text = " ".join(capsys.readouterr().out.split())
    default = JobSpec.model_fields["population"].default
    assert f"--population POPULATION genomes per generation (default: {default})" in help_text
    assert "--fee-bps FEE_BPS fee per side, basis points (60 = 0.60 %) (default: the service's default)" in help_text
    assert miner("submit") == ExitCode.USAGE  # argparse: --dataset is required
    assert capsys.readouterr().err == "error: the following arguments are required: --dataset\n"


def test_submit_follow_shows_each_step_once_then_the_result(miner, fake, capsys):
    assert miner("submit", "--dataset", "synthetic", "--population", "8", "--generations", "3",
                 "--permutations", "2", "--follow") == 0
    out = capsys.readouterr().out
    assert "job job1: 8 genomes x 3 generations, 800 training bars, evaluator balanced@1" in out
    assert [line.split("  ")[0] for line in out.splitlines() if line.startswith("generation ")] == [
        "generation 1/3", "generation 2/3", "generation 3/3"]
    assert "validation 1/3  random baseline: best fitness -0.500" in out and "validation 3/3  shuffled copy 2" in out
    assert out.index("validation 3/3") < out.index("VERDICT: no evidence of an edge") < out.index("best strategy:")
    # each generation's numbers are one strategy's, and the best so far is named as such
    line = next(line for line in out.splitlines() if line.startswith("generation 3/3"))
    assert re.search(r"this generation's best [+-]\d\.\d{3} \(\d+ trades, [+-][\d,]+\.\d\d USD over the folds\)  "
                     r"best so far [+-]\d\.\d{3}$", line), line


def test_follow_reconnects_after_drops_and_shows_every_event_once(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED, generations=4)
    fake.drop_after = 3
    assert miner("follow", job) == 0
    out = capsys.readouterr().out
    assert [line.split("  ")[0] for line in out.splitlines() if line.startswith("generation ")] == [
        f"generation {g}/4" for g in range(1, 5)]
    assert fake.streams == len(fake.logs[job]) // 3 + 1


def test_events_arrive_in_order_exactly_once_and_unknown_types_are_skipped(fake):
    job = fake.add_job(JobStatus.FINISHED)
    fake.logs[job].insert(2, {"seq": 3, "job_id": job, "type": "island_migrated", "time": 0.0, "data": {}})
    for later, entry in enumerate(fake.logs[job][3:], start=4):
        entry["seq"] = later
    fake.drop_after = 2
    with MinerClient(fake.url, fake.token, transport=fake.transport, open_stream=fake.open_stream) as client:
        events = list(client.events(job))
    assert [e.seq for e in events] == [1, 2, *range(4, len(fake.logs[job]) + 1)]
    assert events[0].data.population == 8 and events[-1].type == "finished"


@pytest.mark.parametrize(("status", "words"), [
    (JobStatus.FAILED, "job job1 failed: the coordinator lost the dataset"),
    (JobStatus.CANCELLED, "job job1 cancelled at generation 1")])
def test_following_a_job_that_did_not_finish_exits_4(miner, fake, capsys, status, words):
    job = fake.add_job(status)
    assert miner("follow", job) == ExitCode.JOB_FAILED
    assert words in capsys.readouterr().out


@pytest.mark.parametrize(("token", "job", "exit_code", "words"), [
    ("test-token", "nope", ExitCode.USAGE, "no job 'nope'"),
    ("wrong", "job1", ExitCode.USAGE, "missing or wrong token")])
def test_a_refused_follow_names_the_problem(fake, capsys, token, job, exit_code, words):
    fake.add_job(JobStatus.FINISHED)
    assert main(["--token", token, "follow", job], transport=fake.transport, open_stream=fake.open_stream) == exit_code
    assert words in capsys.readouterr().err


def test_too_many_followers_is_the_service_s_limit(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED)
    fake.refusal = Refused(ERRORS["too_many"], "too many followers: the limit is 2")
    assert miner("follow", job) == ExitCode.SERVICE
    assert "too many followers" in capsys.readouterr().err


# ---- show, result, cancel, jobs ------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "exit_code"), [
    (JobStatus.RUNNING, 0), (JobStatus.FINISHED, 0), (JobStatus.FAILED, 4), (JobStatus.CANCELLED, 4)])
def test_show_prints_the_status_and_exits_4_for_a_job_that_failed(miner, fake, capsys, status, exit_code):
    job = fake.add_job(status)
    assert miner("show", job) == exit_code
    out = capsys.readouterr().out
    assert f"job {job}: {status.value}" in out and "progress: generation 0/2" in out
    assert ("error: the coordinator lost the dataset" in out) == (status is JobStatus.FAILED)


def test_show_numbers_the_best_so_far_s_generation_as_follow_does(miner, fake, capsys):
    job = fake.add_job(JobStatus.RUNNING)
    fake.jobs[job] = fake.jobs[job].model_copy(update={"best": BestSoFar(
        generation=0, fitness=0.25, strategy="LONG when close > sma(20)", genome={}, metrics={"net_pnl": -12.5})})
    assert miner("show", job) == 0
    out = capsys.readouterr().out
    assert "best so far (generation 1): fitness +0.2500  net pnl over the training folds -12.50 USD" in out


def test_result_prints_the_verdict_table_and_json(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED)
    assert miner("result", job) == 0
    out = capsys.readouterr().out
    assert out.startswith("VERDICT: no evidence of an edge") and "net_pnl" in out
    assert "folds: 1 of 1 profitable, 40 trades together (what min_trades counts" in out
    assert miner("result", job, "--json") == 0
    assert json.loads(capsys.readouterr().out)["job_id"] == job


@pytest.mark.parametrize(("status", "exit_code"), [
    (JobStatus.RUNNING, ExitCode.USAGE), (JobStatus.FAILED, ExitCode.JOB_FAILED),
    (JobStatus.CANCELLED, ExitCode.JOB_FAILED)])
def test_result_of_an_unfinished_job(miner, fake, capsys, status, exit_code):
    job = fake.add_job(status)
    assert miner("result", job) == exit_code
    assert f"job '{job}' is {status.value}: a result exists only once it has finished" in capsys.readouterr().err


def test_cancel(miner, fake, capsys):
    running, finished = fake.add_job(JobStatus.RUNNING), fake.add_job(JobStatus.FINISHED)
    assert miner("cancel", running) == 0
    assert f"job {running}: cancelling (it stops between batches)" in capsys.readouterr().out
    assert miner("cancel", finished) == ExitCode.USAGE
    assert f"job '{finished}' is already finished" in capsys.readouterr().err
    assert miner("cancel", "nope") == ExitCode.USAGE
    assert "no job 'nope'" in capsys.readouterr().err


def test_jobs_lists_every_job(miner, fake, capsys):
    jobs = [fake.add_job(status) for status in (JobStatus.RUNNING, JobStatus.FINISHED)]
    assert miner("jobs") == 0
    out = capsys.readouterr().out
    assert all(job in out for job in jobs) and "running" in out and "finished" in out


# ---- the exit-code table ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "exit_code"), [
    ("bad_request", 2), ("unauthorized", 2), ("forbidden", 2), ("not_found", 2), ("conflict", 2), ("too_large", 2),
    ("invalid_request", 2), ("invalid_data", 2), ("too_many", 3), ("internal", 3), ("unavailable", 3),
    ("cannot_start", 3)])
def test_each_error_of_the_service_has_its_exit_code(miner, fake, capsys, code, exit_code):
    fake.refusal = Refused(ERRORS[code], f"refused with {code}")
    assert miner("jobs") == exit_code
    assert f"error: refused with {code}" in capsys.readouterr().err


@pytest.mark.parametrize(("failure", "words"), [
    (httpx.ConnectError("connection refused"), "cannot reach the miner service at http://miner.test"),
    (httpx.ReadTimeout("timed out"), "timed out"),
    (httpx.Response(502, text="Bad Gateway"), "Bad Gateway")])
def test_a_service_that_cannot_answer_exits_3(fake, capsys, failure, words):
    def answer(request):
        if isinstance(failure, Exception):
            raise failure
        return failure

    assert main(["jobs"], transport=httpx.MockTransport(answer)) == ExitCode.SERVICE
    assert words in capsys.readouterr().err


def test_no_token_is_a_usage_error(miner, monkeypatch, capsys):
    monkeypatch.delenv("MINER_TOKEN")
    assert miner("jobs") == ExitCode.USAGE
    assert "no API token" in capsys.readouterr().err


# ---- issue 15: no tracebacks, output a script can use, job prefixes ------------------------------------------

def test_a_job_is_named_by_a_unique_prefix(miner, fake, capsys):
    fake.add_job(JobStatus.RUNNING)
    fake.jobs["abc123"] = fake.jobs.pop("job1").model_copy(update={"id": "abc123"})
    fake.add_job(JobStatus.FINISHED), fake.add_job(JobStatus.FINISHED)
    assert miner("show", "ab") == 0 and "job abc123: running" in capsys.readouterr().out
    assert miner("cancel", "abc") == 0 and "job abc123: cancelling" in capsys.readouterr().out
    assert miner("result", "job3") == 0
    capsys.readouterr()
    assert miner("show", "job") == ExitCode.USAGE
    assert "job 'job' is ambiguous: 2 job ids start with it (job3, job2)" in capsys.readouterr().err
    for unknown in ("zz", "a/b", "?x"):
        assert miner("result", unknown) == ExitCode.USAGE
        assert f"no job {unknown!r}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["jobs"], ["datasets"], ["evaluator", "list"], ["evaluator"], ["cluster"]])
def test_piped_tables_are_never_cut(miner, fake, capsys, argv):
    fake.datasets = ("BTC-USD_FIVE_MINUTE_" + "X" * 150,)
    fake.add_job(JobStatus.FINISHED, dataset=fake.datasets[0])
    assert miner(*argv) == 0
    out = capsys.readouterr().out
    assert "…" not in out and all(len(line) < 1000 for line in out.splitlines())
    if argv[0] in ("jobs", "datasets"):
        assert fake.datasets[0] in out


@pytest.mark.parametrize(("argv", "key"), [
    (["jobs", "--json"], "status"), (["datasets", "--json"], "fingerprint"), (["evaluator", "--json"], "version"),
    (["cluster", "--json"], "nodes"), (["show", "job1", "--json"], "progress"),
    (["result", "job1", "--json"], "job_id")])
def test_every_read_command_has_json(miner, fake, capsys, argv, key):
    fake.add_job(JobStatus.FINISHED)
    assert miner(*argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert key in (data[0] if isinstance(data, list) else data)


def test_show_prints_the_spec_on_one_line(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED, evaluator="a_long_evaluator_name_" + "x" * 17)
    assert miner("show", job) == 0
    out = capsys.readouterr().out.splitlines()
    spec = next(line for line in out if line.startswith("spec: "))
    assert json.loads(spec.removeprefix("spec: "))["evaluator"].endswith("x" * 17)  # as asked
    assert "evaluator: balanced@1 (pinned at submission)" in out  # the version it runs with


@pytest.mark.parametrize(("url", "words"), [
    ("miner.test:8000", "error: --url 'miner.test:8000' is not a service URL: it must start with http://"),
    ("ftp://miner.test", "is not a service URL"), ("http://", "is not a service URL")])
def test_a_url_without_a_scheme_is_named(miner, capsys, url, words):
    assert miner("jobs", "--url", url) == ExitCode.USAGE  # --url after the command, too
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_connection_flags_after_the_command(fake, capsys):
    fake.add_job(JobStatus.FINISHED)
    run = lambda *argv: main(list(argv), transport=fake.transport, open_stream=fake.open_stream)  # noqa: E731
    assert run("--token", "wrong", "result", "job1", "--token", fake.token) == 0  # the later one counts
    assert run("result", "job1", "--token", "wrong") == ExitCode.USAGE
    assert "missing or wrong token" in capsys.readouterr().err


def test_plot_to_a_missing_folder_is_a_usage_error(miner, fake, capsys, tmp_path):
    job = fake.add_job(JobStatus.FINISHED)
    assert miner("result", job, "--plot", str(tmp_path / "nodir" / "x.png")) == ExitCode.USAGE
    assert capsys.readouterr().err.startswith(f"error: --plot {tmp_path}/nodir/x.png: the folder")


@pytest.mark.parametrize("args", [("--json",), ()], ids=["json", "tables (rich)"])
def test_a_reader_that_leaves_early_ends_it_quietly(miner, fake, capsys, monkeypatch, args):
    class Gone(io.StringIO):  # `miner result --json | head -1`: head has left
        def write(self, text):
            raise BrokenPipeError

    job = fake.add_job(JobStatus.FINISHED)
    monkeypatch.setattr("sys.stdout", Gone())
    assert miner("result", job, *args) == 0  # rich's own answer to a broken pipe is SystemExit(1)
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("content", "words"), [
    (b"", "is empty"), (b"\xff\xfe\x00", "is not a text CSV"), (b"time,price\n1,2\n", "missing column(s)")])
def test_a_defective_csv_is_the_user_s_input(miner, fake, capsys, tmp_path, content, words):
    csv = tmp_path / "eth.csv"
    csv.write_bytes(content)
    assert miner("datasets", "upload", str(csv)) == ExitCode.USAGE
    assert words in capsys.readouterr().err
    csv.write_bytes(b"timestamp,open,high,low,close,volume\n0,1,1,1,1,1\n")
    assert miner("datasets", "upload", str(csv)) == 0 and "uploaded eth" in capsys.readouterr().out


def test_follow_of_an_ended_job_shows_the_rate_of_the_service_s_clock(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED, population=8, generations=2)  # events one second apart
    assert miner("follow", job) == 0
    rates = [line.split("  ")[2] for line in capsys.readouterr().out.splitlines() if line.startswith("generation ")]
    assert rates == ["4 evals/s", "3 evals/s"]  # the job's average since its first generation started: 8 / 2, 16 / 5


def test_follow_shows_a_sensible_rate_when_an_epoch_s_generations_are_told_together(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED, population=8, generations=2)
    for entry in fake.logs[job]:  # the service tells an epoch's bests together, when its last island is back
        if entry["type"] in ("generation_started", "batch_evaluated", "generation_best"):
            entry["time"] = 1.7e9 + (0 if entry["type"] == "generation_started" and entry["data"]["generation"] == 0
                                     else 4)
    assert miner("follow", job) == 0
    rates = [line.split("  ")[2] for line in capsys.readouterr().out.splitlines() if line.startswith("generation ")]
    assert rates == ["2 evals/s", "4 evals/s"]  # 8 then 16 genomes over the 4 s since the first generation began


def test_trade_statistics_of_a_side_without_trades_are_not_shown(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED)
    result = fake.results[job]
    result.holdout = result.holdout.model_copy(update={"metrics": {**METRICS, "trades": 0.0, "profit_factor": 100.0,
                                                                   "win_rate": 0.0}})
    assert miner("result", job) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") == 4}
    assert rows["profit_factor"].split("│")[3].strip() == "-" and rows["win_rate"].split("│")[3].strip() == "-"
    assert rows["profit_factor"].split("│")[2].strip() == "1.30"


def test_follow_says_when_a_full_disk_pauses_the_job_and_when_it_resumes(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED)
    log = fake.logs[job]
    pause = [{"seq": 0, "job_id": job, "type": "paused", "time": 0.0,
              "data": {"reason": "the disk holding /x/miner.db is full"}},
             {"seq": 0, "job_id": job, "type": "resumed", "time": 0.0, "data": {}}]
    log[3:3] = pause
    for seq, entry in enumerate(log, start=1):
        entry["seq"] = seq
    assert miner("follow", job) == 0
    out = capsys.readouterr().out
    assert f"job {job} paused: the disk holding /x/miner.db is full" in out
    assert out.index("paused") < out.index(f"job {job} resumed") < out.index("VERDICT")


# ---- a job that ended early, and the hall of fame ----------------------------------------------------------

@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.FAILED])
def test_result_of_a_job_that_ended_after_a_generation_is_its_best_so_far(miner, fake, capsys, status):
    job = add_ended_early(fake, status)
    assert miner("result", job) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {job} {status.value} at generation 1; not validated")
    assert "VERDICT: not validated: the job ended before the permutation test ran" in out and "net_pnl" in out
    assert "hall of fame" not in out  # only with --top
    assert miner("result", job, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cancelled"] is True and len(result["hall_of_fame"]) == 3


def test_result_top_lists_the_best_distinct_strategies_with_their_holdout(miner, fake, capsys):
    job = add_ended_early(fake, JobStatus.CANCELLED)
    assert miner("result", job, "--top", "2") == 0
    out = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if "(stop " in line]
    assert len(rows) == 2 and "hall of fame of job" in out
    assert rows[0][:2] == ["1", "+0.4000"] and rows[1][4:] == ["-0.50 %", "40", f"{STRATEGY} (stop 1 %)"]
    assert miner("result", job, "--top", "10") == 0  # more than it holds: all of them
    assert len([line for line in capsys.readouterr().out.splitlines() if "(stop " in line]) == 3
    assert miner("result", job, "--top", "1", "--json") == 0
    assert [e["fitness"] for e in json.loads(capsys.readouterr().out)["hall_of_fame"]] == [0.4]
    assert miner("result", job, "--top", "0") == ExitCode.USAGE
    assert capsys.readouterr().err == "error: --top 0: must be at least 1\n"


# ---- export and compare ----------------------------------------------------------------------------------------

def test_export_prints_the_strategy_document(miner, fake, capsys):
    job = fake.add_job(JobStatus.FINISHED, costs={"fee_bps": 10}, holdout_fraction=0.25)
    assert miner("export", job[:4]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert len(out) < 3000  # compact: no trades, no equity curve
    assert (doc["schema"], doc["job_id"], doc["rank"], doc["strategy"]) == ("strategy-miner/strategy/1", job, 1,
                                                                           STRATEGY)
    assert doc["genome"] == fake.results[job].genome and doc["metrics"]["train"] == METRICS
    assert doc["costs"] == {"fee_bps": 10.0, "slippage_bps": 5.0, "initial_cash": 10_000.0}
    assert (doc["dataset"], doc["evaluator_version"], doc["holdout_fraction"]) == ("synthetic", "balanced@1", 0.25)


@pytest.mark.parametrize(("rank", "exit_code", "words"), [
    ("2", 0, None), ("3", 0, None), ("4", ExitCode.USAGE, "error: --rank 4: job job1 kept 3 strategies: --rank 1 to 3"),
    ("0", ExitCode.USAGE, "error: --rank 0: must be at least 1 (1 is the best strategy)")])
def test_export_rank_k_is_the_k_th_of_the_hall_of_fame(miner, fake, capsys, rank, exit_code, words):
    job = add_ended_early(fake, JobStatus.CANCELLED)
    assert miner("export", job, "--rank", rank) == exit_code
    out, err = capsys.readouterr()
    if words:
        assert err == words + "\n"
    else:
        entry = fake.results[job].hall_of_fame[int(rank) - 1]
        doc = json.loads(out)
        assert (doc["rank"], doc["genome"], doc["strategy"]) == (int(rank), entry.genome, entry.strategy)
        assert doc["metrics"] == {"train": entry.train_metrics, "holdout": entry.holdout_metrics}


@pytest.mark.parametrize(("setup", "argv", "exit_code", "words"), [
    (JobStatus.FINISHED, ["--rank", "2"], ExitCode.USAGE, "error: --rank 2: job job1's result holds only its best "
                                                          "strategy (the service kept no hall of fame): only --rank 1"),
    (JobStatus.FINISHED, ["--out", "/nonexistent/dir/s.py"], ExitCode.USAGE, "error: --out /nonexistent/dir/s.py: "
                                                                             "the folder /nonexistent/dir does not"),
    (JobStatus.FINISHED, ["--format", "yaml"], ExitCode.USAGE, "error: --format: invalid choice: 'yaml'"),
    (JobStatus.RUNNING, [], ExitCode.USAGE, "error: job 'job1' is running: a result exists only once"),
    (JobStatus.FAILED, [], ExitCode.JOB_FAILED, "error: job 'job1' is failed: a result exists only once")])
def test_export_refusals_are_one_line_with_their_exit_code(miner, fake, capsys, setup, argv, exit_code, words):
    fake.add_job(setup)
    assert miner("export", "job1", *argv) == exit_code
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1


def test_export_of_an_unknown_job_names_it(miner, fake, capsys):
    assert miner("export", "nope") == ExitCode.USAGE
    assert capsys.readouterr().err.startswith("error: no job 'nope'")


def test_compare_shows_the_best_strategies_side_by_side(miner, fake, capsys):
    finished, cancelled = fake.add_job(JobStatus.FINISHED), add_ended_early(fake, JobStatus.CANCELLED)
    fake.results[finished] = fake.results[finished].model_copy(update={"holdout": None})
    assert miner("compare", finished, cancelled) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [cell.strip() for cell in next(line for line in lines if "┃" in line).split("┃")[2:-1]] == [
        finished, cancelled]
    rows = {cells[0]: cells[1:] for cells in ([cell.strip() for cell in line.split("│")[1:-1]]
                                              for line in lines if "│" in line)}
    assert rows["verdict"] == ["no_edge (p = 0.50)", "not_validated"]
    assert rows["fitness"] == ["+0.4000", "+0.4000"] and rows["train return_pct"] == ["+1.20 %", "+1.20 %"]
    assert rows["holdout return_pct"] == ["-", "+1.20 %"] and rows["train trades"] == ["40", "40"]
    assert rows["train max_drawdown"] == ["8.0%", "8.0%"] and rows["strategy"] == [STRATEGY, STRATEGY]
    assert miner("compare", finished, cancelled, "--json") == 0
    compared = json.loads(capsys.readouterr().out)
    assert [c["job_id"] for c in compared] == [finished, cancelled] and compared[0]["holdout"] is None
    assert compared[1] == {"job_id": cancelled, "dataset": "synthetic", "fitness": 0.4, "verdict": "not_validated",
                           "p_value": None, "train": {"return_pct": 1.2, "trades": 40.0, "max_drawdown": 0.08},
                           "holdout": {"return_pct": 1.2, "trades": 40.0, "max_drawdown": 0.08},
                           "strategy": STRATEGY}


@pytest.mark.parametrize(("status", "exit_code", "words"), [
    (None, ExitCode.USAGE, "error: no job 'nope'"),
    (JobStatus.RUNNING, ExitCode.USAGE, "error: job 'job2' is running"),
    (JobStatus.FAILED, ExitCode.JOB_FAILED, "error: job 'job2' is failed")])
def test_compare_names_the_job_it_cannot_compare(miner, fake, capsys, status, exit_code, words):
    fake.add_job(JobStatus.FINISHED)
    other = fake.add_job(status) if status else "nope"
    assert miner("compare", "job1", other) == exit_code
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_token_that_starts_with_a_dash_is_a_token_not_a_flag(miner, fake, where):
    token = fake.token = "-kS0rEwJ4tqHk3pJ1QyL2h9Yw8dXfVbN6mCzA5eR7uT"  # urlsafe base64: one in 64 starts so
    argv = ["--token", token, "jobs"] if where == "before" else ["jobs", "--token", token]
    assert miner(*argv) == ExitCode.OK
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {token}"
    assert miner("jobs", "--token") == ExitCode.USAGE  # no value at all is still a usage error


def test_secret_flags_are_glued_to_their_values_only_before_a_double_dash():
    assert glue_secrets(["--token", "-x", "jobs", "--admin-token", "a"]) == ["--token=-x", "jobs", "--admin-token=a"]
    assert glue_secrets(["result", "--", "--token", "x"]) == ["result", "--", "--token", "x"]
