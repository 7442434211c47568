"""Pushed evaluator code runs only in sandbox processes, under a memory and a time limit.

First the sandbox alone (no Ray, fast): each attack, what it is answered with, and that the sandbox scores
again right after. Then the attacks on the shared test service, written as an admin would push them: every
one is refused or fails its job with a message naming the limit, ``GET /v1/jobs`` answers within 2 s
throughout, and a job running meanwhile finishes with its normal result.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
import ray
from ray.util.state import list_actors

from client import ServiceError
from engine.evaluator import Evaluator, EvaluatorError, EvaluatorSource, get_evaluator
from engine.layout import N_METRICS
from engine.miner import mine
from engine.settings import MinerSettings
from engine.synthetic import synthetic_candles
from serve_app.config import EvaluatorLimits
from serve_app.sandbox import Sandbox, SandboxedEvaluator

from .jobs import assert_same_result, in_process
from .test_attacks import coordinator_answers_within
from .test_evaluators import worker_pids
from .test_resilience import coordinator

LIMITS = EvaluatorLimits(memory_mb=256, batch_s=2.0)
ROOMY = EvaluatorLimits(memory_mb=256, batch_s=60.0)  # for the attacks on memory, on a busy machine
METRICS = np.random.default_rng(7).normal(size=(100, N_METRICS))
EXITS = "import sys\n\nsys.exit(0)\n\n\ndef score(m):\n    return m.trades\n"
SPINS = "while True:\n    pass\n"
SLEEPS = "import time\n\n\ndef score(m):\n    time.sleep(10**6)\n"
TEN_GB = textwrap.dedent("""\
    import numpy as np


    def score(m):
        written = [np.ones(2**17) for _ in range(10 * 2**10)]  # 10 GB, 1 MB at a time, every page written
        return m.trades + len(written)
""")
SHARED_10_GB = textwrap.dedent("""\
    import mmap


    def score(m):
        shared = mmap.mmap(-1, 10 * 2**30)  # a shared mapping: not counted by RLIMIT_DATA
        for page in range(0, len(shared), 4096):
            shared[page] = 1
        return m.trades
""")
ATTACKS = {  # attack: (source, words of the answer, limits in the unit test)
    "sys.exit(0) at top level": (EXITS, "line 3: SystemExit: 0", LIMITS),
    "while True at top level": (SPINS, "took over 2 s, its time limit (user_config evaluator_limits.batch_s)",
                                LIMITS),
    "a score that sleeps forever": (SLEEPS, "took over 2 s, its time limit", LIMITS),
    "10 GB written page by page": (TEN_GB, "over its memory limit of 256 MB (user_config evaluator_limits.memory_mb)",
                                   ROOMY),
    "10 GB of shared memory": (SHARED_10_GB, "used over 256 MB, its memory limit", ROOMY),
    "os._exit": ("import os\n\n\ndef score(m):\n    os._exit(3)\n", "made its sandbox process exit (code 3)", LIMITS),
    "KeyboardInterrupt": ("def score(m):\n    raise KeyboardInterrupt\n", "line 2: KeyboardInterrupt", LIMITS),
}


@pytest.fixture(scope="module")
def sandbox():
    sandbox = Sandbox()
    yield sandbox
    sandbox.close()


def scores(sandbox: Sandbox, evaluator: SandboxedEvaluator, limits: EvaluatorLimits = LIMITS) -> np.ndarray:
    with sandbox.limited(limits):
        return evaluator.fitness(METRICS)


# ---- the sandbox alone -------------------------------------------------------------------------------------------
def test_the_sandbox_scores_exactly_as_in_process(sandbox):
    for name, params in (("balanced", {}), ("calmar", {"drawdown_floor": 0.05})):
        local = get_evaluator(name, **params)
        sandboxed = SandboxedEvaluator(sandbox, name, local.source, params)
        assert sandboxed.version == local.version and sandboxed.params == local.params
        assert np.array_equal(scores(sandbox, sandboxed), local.fitness(METRICS))


def test_version_and_params_are_known_without_running_the_module():
    checked = EvaluatorSource("exits", EXITS + 'PARAMS = {"floor": 1, "label": "x"}\n', {"floor": 2})
    assert checked.params == {"floor": 2.0, "label": "x"} and checked.version.startswith("exits@")
    for source, words in (("def score(m)\n    return 1\n", "<evaluator e>, line 1: SyntaxError"),
                          ("PARAMS = dict(a=1)\n", "line 1: PARAMS must be a dict"),
                          ("PARAMS = {'a': 1}\nPARAMS = {'a': 2}\n", "assigned once")):
        with pytest.raises(EvaluatorError, match=words):
            EvaluatorSource("e", source)
    with pytest.raises(EvaluatorError, match="unknown parameter"):
        EvaluatorSource("e", "PARAMS = {'a': 1}\n", {"b": 1.0})


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_is_answered_and_the_sandbox_scores_again(sandbox, attack):
    source, words, limits = ATTACKS[attack]
    started = time.monotonic()
    with pytest.raises(EvaluatorError, match=re.escape(words)):
        scores(sandbox, SandboxedEvaluator(sandbox, "attack", source), limits)
    assert time.monotonic() - started < min(limits.batch_s, LIMITS.batch_s) + 5
    good = get_evaluator()
    assert np.array_equal(scores(sandbox, SandboxedEvaluator(sandbox, "balanced", good.source)), good.fitness(METRICS))


def test_the_time_limit_is_per_batch_not_per_call(sandbox):
    slow = SandboxedEvaluator(sandbox, "slow", "import time\n\n\ndef score(m):\n    time.sleep(0.8)\n"
                                               "    return m.trades\n")
    with pytest.raises(EvaluatorError, match="took over 2 s"), sandbox.limited(LIMITS):
        for _ in range(4):  # four folds of one batch: 3.2 s in all
            slow.fitness(METRICS)


def test_pushed_code_never_runs_without_limits(sandbox):
    with pytest.raises(RuntimeError, match=r"outside Sandbox\.limited"):
        SandboxedEvaluator(sandbox, "e", "def score(m):\n    return m.trades\n").fitness(METRICS)


def test_a_killed_parent_takes_its_spinning_sandbox_with_it():
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import numpy as np
        from serve_app.config import EvaluatorLimits
        from serve_app.sandbox import Sandbox, SandboxedEvaluator
        sandbox = Sandbox()
        with sandbox.limited(EvaluatorLimits(batch_s=600)):
            SandboxedEvaluator(sandbox, "spins", {SPINS!r}).fitness(np.zeros((1, 12)))
        """)])
    deadline = time.monotonic() + 30
    while not (children := psutil.Process(parent.pid).children()) or children[0].cpu_times().user < 0.5:
        assert time.monotonic() < deadline, "the sandbox never started spinning"
        time.sleep(0.1)
    parent.kill()
    parent.wait()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"sandbox {[c.pid for c in alive]} outlived its parent"


# ---- on the service ----------------------------------------------------------------------------------------------
HANGS_ON_REAL_BATCHES = textwrap.dedent("""\
    import time


    def score(m):
        if len(m.trades) > 64:  # the trial scores 64 genomes, then 2: it passes; a job's batches are bigger
            time.sleep(10**6)
        return m.trades
""")
NORMAL = {"population": 30, "generations": 4, "seed": 31, "permutations": 2}


@pytest.fixture(scope="module")
def limited_service(service):
    """The shared service with a short time limit, so each hang costs seconds."""
    with service.deployed(evaluator_limits={"batch_s": 5.0, "memory_mb": 256}):
        yield service


def test_exit_hang_and_hog_at_push_are_refused_while_the_service_keeps_working(limited_service):
    service = limited_service
    with service.client() as client, service.admin() as admin, coordinator_answers_within(service):
        normal = client.submit(dataset="synthetic", **NORMAL)
        for attack in ("sys.exit(0) at top level", "while True at top level", "a score that sleeps forever",
                       "10 GB written page by page"):
            source, words, _ = ATTACKS[attack]
            words = words.replace("2 s", "5 s")
            with pytest.raises(ServiceError) as refused:
                admin.push_evaluator("attack", source)
            assert refused.value.status == 422 and words in refused.value.message, attack
        assert "attack" not in {e.name for e in client.evaluators()}
        assert client.wait(normal.id).status == "finished"
        assert_same_result(client.result(normal.id), in_process("synthetic", **NORMAL))
        pushed = admin.push_evaluator("most_trades", "def score(m):\n    return m.trades\n")  # pushes still work
        assert pushed.version.startswith("most_trades@")


def test_an_evaluator_that_hangs_on_real_batches_fails_its_job_and_delete_ends_another(limited_service):
    service = limited_service
    with service.client() as client, service.admin() as admin, coordinator_answers_within(service):
        version = admin.push_evaluator("hangs", HANGS_ON_REAL_BATCHES).version  # passes its trial
        stuck = client.submit(dataset="synthetic", population=300, generations=3, evaluator=version)
        deleted = client.submit(dataset="synthetic", population=300, generations=3, evaluator=version, seed=2)
        normal = client.submit(dataset="synthetic", **NORMAL)
        deadline = time.monotonic() + 60
        while client.job(deleted.id).status != "running":
            assert time.monotonic() < deadline, "the job to delete never started"
            time.sleep(0.2)
        time.sleep(1.0)  # its batches are out, held by hung sandboxes
        started = time.monotonic()
        client.cancel(deleted.id)
        assert client.wait(deleted.id).status == "cancelled"
        assert time.monotonic() - started < 3

        failed = client.wait(stuck.id)
        assert failed.status == "failed"
        assert f"evaluator {version} failed on a batch" in failed.error
        assert "took over 5 s, its time limit (user_config evaluator_limits.batch_s)" in failed.error
        assert client.wait(normal.id).status == "finished"
        assert_same_result(client.result(normal.id), in_process("synthetic", **NORMAL))


def test_a_pushed_evaluator_scores_the_same_in_the_sandbox_as_in_process(limited_service):
    most_trades = "import numpy as np\n\nPARAMS = {'bonus': 1}\n\n\ndef score(m, bonus):\n    return m.trades + bonus\n"
    spec = {"population": 12, "generations": 2, "seed": 6, "folds": 2, "permutations": 2}
    with limited_service.client() as client, limited_service.admin() as admin:
        pushed = admin.push_evaluator("plus_one", most_trades, params={"bonus": 2})
        assert pushed.version == Evaluator("plus_one", most_trades, {"bonus": 2}).version
        job = client.submit(dataset="synthetic", evaluator=pushed.version, **spec)
        assert client.wait(job.id).status == "finished"
        result = client.result(job.id)
    local = mine(synthetic_candles(), MinerSettings(**spec), evaluator=Evaluator("plus_one", most_trades, {"bonus": 2}))
    assert result.genome == local.best_genome.model_dump(mode="json") and result.fitness == local.fitness
    assert result.folds == local.folds  # the folds' scores: from the coordinator's sandbox


def test_pushed_code_runs_only_in_sandbox_processes_never_in_the_coordinator_or_the_ingress(limited_service, tmp_path):
    where = f"import os\nimport pathlib\n\npathlib.Path({str(tmp_path)!r}, str(os.getpid())).touch()\n\n\n" \
            "def score(m):\n    return m.trades\n"
    with limited_service.client() as client, limited_service.admin() as admin:
        pushed = admin.push_evaluator("where", where)
        job = client.submit(dataset="synthetic", evaluator=pushed.version, population=12, generations=2, seed=3,
                            permutations=2)
        assert client.wait(job.id).status == "finished"
    ran_in = {int(marker.name) for marker in tmp_path.iterdir()}  # every process that ran the module's top level
    coordinator_pid = ray.get(coordinator().memory.remote())["pid"]
    ingress = {a.pid for a in list_actors(filters=[("class_name", "=", "ServeReplica:miner:MinerAPI"),
                                                    ("state", "=", "ALIVE")])}
    service = {coordinator_pid, *ingress, *worker_pids()}
    assert ran_in and not ran_in & service
    parents = {psutil.Process(pid).ppid() for pid in ran_in}  # sandboxes: children of workers and the coordinator
    assert coordinator_pid in parents and parents <= service
