"""Each shared concept is defined once, in its home module (docs/architecture.md, "Where each concept lives"), and
imported everywhere else: a class, function or module-level constant of the same name defined anywhere else in
the source packages fails here, naming the concept, its home and the place of the copy."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("bench", "client", "engine", "feeds", "schema", "serve_app")

HOMES = {
    "schema/errors.py": ("ErrorBody", "ExitCode", "exit_code_for", "NORMAL_CLOSE", "SERVICE_FAILED_CLOSE",
                         "ErrorKind", "ERRORS", "HTTP_ERROR", "refusal"),
    "schema/events.py": ("EventData", "JobStarted", "GenerationStarted", "BatchEvaluated", "GenerationBest",
                         "ValidationStarted", "ValidationSearchFinished", "Finished", "Failed", "Cancelled",
                         "AnyEventData", "EVENT_TYPES", "Event"),
    "schema/research.py": ("Verdict", "SIGNIFICANCE", "ValidationSettings", "FoldResult", "Baselines", "Validation",
                           "research_lines"),
    "schema/search.py": ("SearchSettings",),
    "schema/job.py": ("RiskLevel", "JobParameters"),
    "schema/costs.py": ("Costs",),
    "schema/numbers.py": ("StrictNumbers",),
    "schema/version.py": ("PACKAGE", "package_version"),
    "client/models.py": ("JobSpec", "JobStatus", "ENDED", "BestSoFar", "Progress", "JobInfo", "Submitted",
                         "CancelAccepted", "Trade", "EquityCurve", "Backtest", "BacktestRequest", "BacktestResult",
                         "JobResult", "DatasetInfo", "NodeInfo", "ClusterInfo", "EVALUATOR_NAME_PATTERN",
                         "EvaluatorPush", "EvaluatorInfo"),
    "engine/layout.py": ("PRICE_FIELDS", "INDICATORS", "KIND_NAMES", "MIN_PERIOD", "MAX_PERIOD", "OPERATORS",
                         "OPERATOR_NAMES", "GENOME_WIDTH", "METRICS", "N_METRICS", "PROFIT_FACTOR_CAP",
                         "TRADE_COLUMNS", "N_TRADE_COLUMNS", "EXIT_REASONS"),
    "engine/evaluator.py": ("DEFAULT_EVALUATOR", "EvaluatorError", "MetricsView", "EvaluatorSource", "Evaluator",
                            "get_evaluator"),
    "engine/settings.py": ("MinerSettings", "RISK_PRESETS"),
    "engine/driver.py": ("Stopped", "GenerationHooks", "drive_generations", "drive_search", "run_blocking"),
    "feeds/coinbase.py": ("download_candles", "DownloadError"),
}
HOME_OF = {name: home for home, names in HOMES.items() for name in names}

# Known second definitions, left as they are for now; each one removed from the code must be removed here too.
KNOWN_COPIES = {
    # Deliberate: a subclass of schema's event that carries the Genome object itself (docs/architecture.md).
    ("GenerationBest", "engine/events.py"),
}


def _module_level(body: list[ast.stmt]):
    """The statements that run at import: the body, and the branches of its if/try/with blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            for branch in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []),
                           *(handler.body for handler in getattr(node, "handlers", []))):
                yield from _module_level(branch)


def _bound_names(target: ast.expr):
    """The names an assignment binds: ``A, *B = ...`` binds A and B; ``A[k] = ...`` and ``a.b = ...`` bind none."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _bound_names(element)
    elif isinstance(target, ast.Starred):
        yield from _bound_names(target.value)


def definitions(source: str) -> dict[str, int]:
    """Names a module defines, with their lines: classes at any depth, functions and assigned names at module level."""
    tree = ast.parse(source)
    found = {node.name: node.lineno for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    for node in _module_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.setdefault(node.name, node.lineno)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for name in _bound_names(target):
                    found.setdefault(name, node.lineno)
    return found


def copies(sources: dict[str, str], allowed: set[tuple[str, str]]) -> list[str]:
    """Every definition of a concept outside its home (and not allowed), as 'concept: path:line (home: module)'."""
    return [f"{name}: {path}:{line} (home: {HOME_OF[name]})"
            for path, source in sorted(sources.items())
            for name, line in sorted(definitions(source).items())
            if name in HOME_OF and path != HOME_OF[name] and (name, path) not in allowed]


def source_tree() -> dict[str, str]:
    return {str(f.relative_to(REPO)): f.read_text() for package in SOURCE_PACKAGES
            for f in sorted((REPO / package).rglob("*.py"))}


def test_each_concept_is_defined_once_in_its_home():
    assert copies(source_tree(), KNOWN_COPIES) == []


@pytest.mark.parametrize("home", sorted(HOMES))
def test_each_home_defines_its_concepts(home):
    defined = definitions((REPO / home).read_text())
    assert [name for name in HOMES[home] if name not in defined] == []


def test_every_known_copy_still_exists():
    """An allowed copy that has since been removed must leave the list, so the list cannot hide a new one."""
    tree = source_tree()
    assert [(name, path) for name, path in sorted(KNOWN_COPIES) if name not in definitions(tree.get(path, ""))] == []


def test_a_drifted_copy_is_named_with_its_place():
    drifted = {
        "client/models.py": (REPO / "client/models.py").read_text(),
        "serve_app/store.py": "\n".join([
            "from client.models import JobStatus",  # an import is not a definition
            "# ENDED = ('finished',)  (a comment is not one either)",
            "DOC = 'class CancelAccepted(BaseModel)'",
            "done = JobStatus.FINISHED",
            "ERRORS['gone'] = None",  # changing a concept in place is not defining it again
            "ENDED = ('finished', 'failed', 'cancelled')",
        ]),
        "serve_app/api.py": "\n".join([
            "try:",
            "    from schema.errors import ERRORS",
            "except ImportError:",
            "    ERRORS: dict = {}",
            "def answer():",
            "    class CancelAccepted:",
            "        status = 'cancelling'",
            "    METRICS = ()  # a function's local is not a module constant",
            "    return CancelAccepted",
        ]),
        "engine/cli.py": "TRADES, TRADE_COLUMNS = [], ('entry_bar',)\ndef package_version():\n    return '0'",
        "engine/settings.py": "class Costs:\n    pass",
    }
    assert copies(drifted, KNOWN_COPIES) == [
        "TRADE_COLUMNS: engine/cli.py:1 (home: engine/layout.py)",
        "package_version: engine/cli.py:2 (home: schema/version.py)",
        "Costs: engine/settings.py:1 (home: schema/costs.py)",
        "CancelAccepted: serve_app/api.py:6 (home: client/models.py)",
        "ERRORS: serve_app/api.py:4 (home: schema/errors.py)",
        "ENDED: serve_app/store.py:6 (home: client/models.py)",
    ]
