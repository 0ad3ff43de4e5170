"""`sloscale run`: flags, their environment variables, and refusals before anything starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sloscale.cli import app
from sloscale.run import split_namespaces

runner = CliRunner()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, ()),
        (["a"], ("a",)),
        (["a", "b"], ("a", "b")),
        (["a,b", "b , c"], ("a", "b", "c")),  # SLOSCALE_NAMESPACES=a,b
    ],
)
def test_namespaces_from_flags_or_a_comma_separated_variable(
    values: list[str] | None, expected: tuple[str, ...]
) -> None:
    assert split_namespaces(values) == expected


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--tick-interval", "fast", "--kubeconfig", "k"], {}, "is not a duration"),
        ([], {"SLOSCALE_TICK_INTERVAL": "0s", "KUBECONFIG": "k"}, "must be positive"),
        (["--status-refresh", "often", "--kubeconfig", "k"], {}, "is not a duration"),
        (["--rate-window", "soon", "--kubeconfig", "k"], {}, "is not a duration"),
        ([], {"SLOSCALE_RATE_WINDOW": "0s", "KUBECONFIG": "k"}, "must be positive"),
        (["--log-level", "chatty", "--kubeconfig", "k"], {}, "not a log level"),
        ([], {"KUBECONFIG": "", "KUBERNETES_SERVICE_HOST": ""}, "pass --kubeconfig"),
        (["--kubeconfig", "/no/such/kubeconfig"], {}, "no such file: /no/such/kubeconfig"),
    ],
)
def test_bad_settings_are_refused_before_the_operator_starts(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = runner.invoke(app, ["run", *args], env=env)
    assert result.exit_code == 2
    assert message in result.output


def test_help_lists_every_flag_with_its_environment_variable() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for flag, variable in [
        ("--namespace", "SLOSCALE_NAMESPACES"),
        ("--prometheus-url", "SLOSCALE_PROMETHEUS_URL"),
        ("--prometheus-bearer-token-file", "SLOSCALE_PROMETHEUS_BEARER_TOKEN_FILE"),
        ("--prometheus-ca-file", "SLOSCALE_PROMETHEUS_CA_FILE"),
        ("--prometheus-insecure-skip-verify", "SLOSCALE_PROMETHEUS_INSECURE_SKIP_VERIFY"),
        ("--tick-interval", "SLOSCALE_TICK_INTERVAL"),
        ("--rate-window", "SLOSCALE_RATE_WINDOW"),
        ("--status-refresh", "SLOSCALE_STATUS_REFRESH"),
        ("--metrics-port", "SLOSCALE_METRICS_PORT"),
        ("--peering", "SLOSCALE_PEERING"),
        ("--log-level", "SLOSCALE_LOG_LEVEL"),
        ("--kubeconfig", "KUBECONFIG"),
    ]:
        assert flag in result.output and variable in result.output
