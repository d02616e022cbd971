"""Config loading: interpolation, strict YAML, and errors that name the file, the key and the problem."""

import threading

import pytest

from sso_common.config import ConfigError, environment, load_yaml


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_environment_interpolation_with_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SET_ONE", "from-env")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    node = load_yaml(write(tmp_path, "a: ${SET_ONE}\nb: ${UNSET_ONE:-fallback}\n"))
    assert node.child("a").value == "from-env" and node.child("b").value == "fallback"


def test_a_launcher_reads_a_config_with_the_environment_of_the_process_it_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("SET_ONE", "the launcher's own")
    path = write(tmp_path, "a: ${SET_ONE:-default}\n")
    seen = []
    with environment({"SET_ONE": "the service's"}):
        other = threading.Thread(target=lambda: seen.append(load_yaml(path).child("a").value))
        other.start()
        other.join()
        assert load_yaml(path).child("a").value == "the service's"
    with environment({}):
        assert load_yaml(path).child("a").value == "default"
    assert seen == ["the launcher's own"]  # another thread still reads the process environment
    assert load_yaml(path).child("a").value == "the launcher's own"


def test_missing_variable_without_default_names_it_and_its_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_THERE", raising=False)
    with pytest.raises(ConfigError, match=r"c\.yaml: line 3: environment variable NOT_THERE is not set"):
        load_yaml(write(tmp_path, "a: 1\nb:\n  c: ${NOT_THERE}\n"))


def test_duplicate_keys_are_refused_with_line(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_yaml(write(tmp_path, "users:\n  bob: {}\n  bob: {}\n"))
    assert "c.yaml: bob: duplicate key at line 3" in str(error.value)


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML at line"):
        load_yaml(write(tmp_path, "a: [1, 2\n"))


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_yaml(tmp_path / "missing.yaml")


def test_node_errors_carry_the_dotted_key(tmp_path):
    node = load_yaml(write(tmp_path, "outer:\n  list: [ok, 3]\n  n: x\n"))
    with pytest.raises(ConfigError, match=r"outer\.list\[1\]: must be a non-empty string"):
        node.child("outer").child("list").strings()
    with pytest.raises(ConfigError, match=r"outer\.n: must be a whole number"):
        node.child("outer").child("n").integer()
    with pytest.raises(ConfigError, match=r"outer\.missing: is required"):
        node.child("outer").child("missing")
    with pytest.raises(ConfigError, match=r"outer\.n: unknown key \(allowed: list\)"):
        node.child("outer").only_keys("list")


def test_integers_from_environment_strings_and_ranges(tmp_path):
    node = load_yaml(write(tmp_path, "a: '42'\nb: 99\n"))
    assert node.child("a").integer(1, 50) == 42
    with pytest.raises(ConfigError, match="out of range"):
        node.child("b").integer(1, 50)


def test_demo_secrets_are_refused_on_https(tmp_path):
    node = load_yaml(write(tmp_path, "token: demo-registration-token\nshort: abc\nreal: 9f2c41d0a7e5b3c8e1f0\n"))
    assert node.child("token").secret("http://127.0.0.1:8001") == "demo-registration-token"
    with pytest.raises(ConfigError, match=r"c\.yaml: token: is the public demo value"):
        node.child("token").secret("https://idp.example.com")
    assert node.child("real").secret("https://idp.example.com") == "9f2c41d0a7e5b3c8e1f0"
    with pytest.raises(ConfigError, match=r"short: must be at least 16 characters"):
        node.child("short").secret("http://127.0.0.1:8001")


@pytest.mark.parametrize("value", ["DEMO-registration-token", "Demo-registration-token", "dEmO-saml-admin-token"])
@pytest.mark.parametrize("url", ["https://idp.example.com", "HTTPS://idp.example.com"])
def test_demo_secrets_are_refused_on_https_whatever_their_case(tmp_path, value, url):
    node = load_yaml(write(tmp_path, f"token: {value}\n"))
    with pytest.raises(ConfigError, match="is the public demo value"):
        node.child("token").secret(url)


def test_nested_defaults_and_values_that_look_like_variables(tmp_path, monkeypatch):
    for name in ("OUTER", "INNER"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, "a: ${OUTER:-${INNER:-http://localhost:8000}/saml/metadata}\nb: ${WEIRD}\n")
    monkeypatch.setenv("WEIRD", "${OUTER:-not expanded}")
    assert load_yaml(path).child("a").value == "http://localhost:8000/saml/metadata"
    assert load_yaml(path).child("b").value == "${OUTER:-not expanded}"
    monkeypatch.setenv("INNER", "http://localhost:9000")
    assert load_yaml(path).child("a").value == "http://localhost:9000/saml/metadata"
    monkeypatch.setenv("OUTER", "http://broker:8000/saml/metadata")
    assert load_yaml(path).child("a").value == "http://broker:8000/saml/metadata"
