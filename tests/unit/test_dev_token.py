"""`metalplane token` and the dev issuer's mint: they sign with the running platform's key and
never make one (a new key signs tokens the API refuses as an unknown `kid`); each role and
tenant combination is its own subject by default."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.settings import Settings
from identity import dev_issuer

ISSUER = "http://127.0.0.1:8000/dev-issuer"


def _key_file(data_dir: Path) -> Path:
    return Settings(data_dir=data_dir).dev_issuer_key_file


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def test_mint_without_a_key_fails_naming_the_file_and_creates_nothing(tmp_path: Path) -> None:
    key_file = _key_file(tmp_path)
    with pytest.raises(dev_issuer.SigningKeyMissingError) as missing:
        dev_issuer.mint(
            key_file, issuer=ISSUER, audience="metalplane", subject="s", roles=["operator"]
        )
    assert str(key_file) in str(missing.value)
    assert missing.value.private_key_file == key_file
    assert list(tmp_path.iterdir()) == []  # neither the key nor its directory


def test_mint_signs_with_the_key_the_jwks_serves(tmp_path: Path) -> None:
    key_file = _key_file(tmp_path)
    dev_issuer.ensure_keypair(key_file)
    before = key_file.read_bytes()
    token = dev_issuer.mint(
        key_file, issuer=ISSUER, audience="metalplane", subject="s", roles=["operator"]
    )
    assert key_file.read_bytes() == before
    (served,) = dev_issuer.jwks(key_file)["keys"]
    assert jwt.get_unverified_header(token)["kid"] == served["kid"]
    public = jwt.PyJWK(served).key
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="metalplane")
    assert claims["sub"] == "s" and claims["roles"] == ["operator"]


def test_default_subjects_differ_per_role_and_tenant() -> None:
    subjects = {
        dev_issuer.default_subject(["operator"]),
        dev_issuer.default_subject(["platform-admin"]),
        dev_issuer.default_subject(["tenant-admin"], "acme"),
        dev_issuer.default_subject(["tenant-admin"], "globex"),
        dev_issuer.default_subject(["tenant-member"], "acme"),
        dev_issuer.default_subject(["tenant-admin", "viewer"], "acme"),
    }
    assert len(subjects) == 6
    assert dev_issuer.default_subject(["operator"]) == "dev-operator"
    assert dev_issuer.default_subject(["platform-admin"]) == "dev-platform-admin"
    assert dev_issuer.default_subject(["tenant-admin"], "acme") == "dev-tenant-admin@acme"
    # The same principal whatever the order the roles were given in.
    assert dev_issuer.default_subject(["viewer", "operator"]) == "dev-operator+viewer"
    assert dev_issuer.default_subject(["operator", "viewer"]) == "dev-operator+viewer"


def test_cli_token_without_a_key_exits_non_zero_and_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METALPLANE_OIDC_ISSUER", raising=False)
    # _settings() writes METALPLANE_DATA_DIR for --data-dir; monkeypatch restores it.
    monkeypatch.setenv("METALPLANE_DATA_DIR", str(tmp_path / "elsewhere"))
    data_dir = tmp_path / "platform"
    result = CliRunner().invoke(app, ["token", "--role", "operator", "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert result.stdout == ""  # no token, so `TOKEN=$(metalplane token ...)` is not a lie
    message = " ".join(result.stderr.split())  # the message spans lines
    assert str(_key_file(data_dir).resolve()) in message
    assert "--data-dir" in message and "METALPLANE_DATA_DIR" in message
    assert not data_dir.exists()


def test_cli_token_with_the_key_prints_the_token_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METALPLANE_OIDC_ISSUER", raising=False)
    monkeypatch.setenv("METALPLANE_DATA_DIR", str(tmp_path))
    dev_issuer.ensure_keypair(_key_file(tmp_path))
    runner = CliRunner()

    result = runner.invoke(app, ["token", "--role", "tenant-admin", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.count(".") == 2 and result.stdout == token + "\n"
    claims = _claims(token)
    assert claims["sub"] == "dev-tenant-admin@acme"
    assert claims["roles"] == ["tenant-admin"] and claims["tenant"] == "acme"

    operator = _claims(runner.invoke(app, ["token", "--role", "operator"]).stdout.strip())
    assert operator["sub"] == "dev-operator" and "tenant" not in operator

    chosen = runner.invoke(app, ["token", "--role", "operator", "--subject", "ann"])
    assert _claims(chosen.stdout.strip())["sub"] == "ann"
