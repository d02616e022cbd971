"""The module map of docs/architecture.md, checked: no import cycles, and each package imports only
what its role allows (the client nothing of the servers, the servers nothing of the development
stand-ins, the broker's core no web framework and no AWS SDK)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("broker", "broker_login", "idp_mock", "sso_common", "devstack", "employee_directory")
SERVERS = ("broker", "idp_mock", "sso_common")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, modules: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Every module this file imports at run time, at any depth (functions included). With `modules`,
    `from package import module` counts as importing the module, not the package."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            submodules = {f"{base}.{alias.name}" for alias in node.names} & set(modules)
            found.update(submodules if len(submodules) == len(node.names) else {base, *submodules})
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}
    names = set(modules)
    return {name: {m for m in imports_of(path, names) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycles(graph):
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def external_imports(package: str) -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in (REPO / package).rglob("*.py")}


def offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {
        module: sorted(m for m in imported if m.split(".")[0] in forbidden or m in forbidden)
        for module, imported in external_imports(package).items()
    }
    return {module: names for module, names in found.items() if names}


def test_the_client_imports_nothing_of_the_servers():
    assert offenders("broker_login", ("broker", "idp_mock", "sso_common", "devstack")) == {}


@pytest.mark.parametrize("package", ["broker", "idp_mock", "sso_common"])
def test_servers_import_nothing_of_the_development_stand_ins(package):
    assert offenders(package, ("devstack", "moto", "broker_login", "tests", "bench")) == {}


def test_the_broker_core_is_free_of_web_and_aws():
    found = {
        module: names
        for module, names in offenders("broker", ("flask", "werkzeug", "boto3", "botocore", "requests")).items()
        if module.startswith(("broker.core", "broker.identity_center", "broker.errors"))
    }
    assert found == {}


@pytest.mark.parametrize("package", ["broker", "idp_mock", "sso_common", "devstack", "broker_login"])
def test_nothing_imports_the_employee_directory_app(package):
    assert offenders(package, ("employee_directory",)) == {}


def test_the_employee_directory_is_an_independent_client_of_the_idp_and_of_aws():
    """It runs where a company's app runs, beside none of this project's servers: it imports none of them,
    nor the development stand-ins (its instance's metadata service is reached over HTTP, as on EC2). Of the
    shared library it uses only the serving stack and the log setup every app here runs with."""
    found = offenders("employee_directory", (*SERVERS, "devstack", "broker_login", "moto", "tests", "bench"))
    allowed = {"sso_common.serve", "sso_common.logs"}
    assert {module: [m for m in names if m not in allowed] for module, names in found.items()} == {
        module: [] for module in found
    }


def test_the_idp_and_the_broker_do_not_import_each_other():
    assert offenders("idp_mock", ("broker",)) == {}
    assert offenders("broker", ("idp_mock",)) == {}


def test_the_scim_service_is_a_domain_of_its_own_behind_its_blueprint():
    """broker/scim (the SCIM service provider's domain) imports no web framework and no AWS SDK, nor the broker's
    HTTP glue; the core imports nothing of it; only the SCIM blueprint and the app factory use it."""
    forbidden = ("flask", "werkzeug", "boto3", "botocore", "broker.http", "broker.aws", "broker.identity_center")
    found = {
        module: sorted(name for name in imported if name == "broker.app" or name.startswith(forbidden))
        for module, imported in external_imports("broker").items()
        if module.startswith("broker.scim")
    }
    assert {module: names for module, names in found.items() if names} == {}
    users = {
        module
        for module, imported in external_imports("broker").items()
        if any(name.startswith("broker.scim") for name in imported) and not module.startswith("broker.scim")
    }
    assert users <= {"broker.http.scim", "broker.app"}
    core = {module: names for module, names in offenders("broker", ("scim2_models", "scim2_server")).items()}
    assert {module for module in core if module.startswith(("broker.core", "broker.identity_center"))} == set()


def test_scim_libraries_stay_on_their_side():
    """The broker serves SCIM (scim2-server) and never acts as a client; the mock IdP is a SCIM client
    (scim2-client, in its pusher) and never serves it."""
    assert offenders("broker", ("scim2_client", "httpx2")) == {}
    assert offenders("idp_mock", ("scim2_server",)) == {}
    clients = {module for module, names in offenders("idp_mock", ("scim2_client", "httpx2")).items()}
    assert clients <= {"idp_mock.scim_push"}
