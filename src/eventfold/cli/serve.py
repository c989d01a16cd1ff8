"""``eventfold serve``: the command API and the query API over HTTP.

With no options: both in one process, on SQLite files in the current
directory, with the in-process bus. With ``--role command`` or ``--role
query`` (and ``--nats``): one side per process, each on its own database.

Security (docs/security.md): ``--jwt-*`` and/or ``--api-keys`` with a
``--policy``; ``--tenants`` serves tenants; ``--encrypt`` and
``--require-metadata`` wrap the store. Secrets come from files or
environment variables only: a URL with a password given on the command line
is refused. Without authentication, a non-loopback ``--host`` is refused
unless ``--insecure``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from eventfold.cli.bus import (
    NatsOption,
    NatsPasswordFileOption,
    NatsTokenFileOption,
    NatsUserOption,
    PrefixOption,
)
from eventfold.cli.common import errors, load_object
from eventfold.cli.tenants import TenantsOption
from eventfold.errors import ConfigurationError, EventfoldError
from eventfold.security.apikeys import APIKeyAuthenticator, APIKeyStore, open_api_keys
from eventfold.security.authn import Authenticator, Security
from eventfold.security.jwt import JWTAuthenticator
from eventfold.security.policy import Policy
from eventfold.security.secrets import read_secret
from eventfold.tenancy.placement import Tenancy

JWT_SECRET_ENV = "EVENTFOLD_JWT_SECRET"

SERVICES_ENV = "EVENTFOLD_SERVICES"
DEFAULT_APP = "eventfold.examples.shop.services:service"


def load_definition(spec: str) -> object:
    from eventfold.services.runtime import ServiceDefinition

    obj = load_object(spec, "--app")
    if not isinstance(obj, ServiceDefinition) and callable(obj):
        obj = obj()
    if not isinstance(obj, ServiceDefinition):
        raise typer.BadParameter(
            f"{spec} is a {type(obj).__name__}, not a ServiceDefinition", param_hint="--app"
        )
    return obj


def serve(
    ctx: typer.Context,
    app: Annotated[
        str,
        typer.Option(
            "--app",
            envvar=SERVICES_ENV,
            help="module:attribute naming a ServiceDefinition (or a function returning one)",
        ),
    ] = DEFAULT_APP,
    role: Annotated[
        str,
        typer.Option("--role", help="all (both APIs), command or query"),
    ] = "all",
    store: Annotated[
        str, typer.Option("--store", envvar="EVENTFOLD_STORE", help="event store URL")
    ] = "sqlite:///eventfold.db",
    read_model: Annotated[
        str,
        typer.Option(
            "--read-model", envvar="EVENTFOLD_READ_MODEL", help="the query side's database URL"
        ),
    ] = "sqlite:///eventfold-reads.db",
    outcomes: Annotated[
        str | None,
        typer.Option(
            "--outcomes",
            envvar="EVENTFOLD_OUTCOMES",
            help="the command side's database (outcomes, checkpoints); default beside --store",
        ),
    ] = None,
    nats: NatsOption = None,
    prefix: PrefixOption = "eventfold",
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, max=5, help="JetStream stream replicas")
    ] = 1,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    command_port: Annotated[
        int, typer.Option("--command-port", min=0, max=65535, help="0: any free port")
    ] = 8000,
    query_port: Annotated[
        int, typer.Option("--query-port", min=0, max=65535, help="0: any free port")
    ] = 8001,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="workers for queued commands")
    ] = 2,
    ack_wait: Annotated[
        float,
        typer.Option("--ack-wait", min=0.1, help="seconds before the bus redelivers a message"),
    ] = 30.0,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, help="largest request body in bytes")
    ] = 1024 * 1024,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = (
        "warning"
    ),
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="TOML file mapping roles and scopes to permissions"),
    ] = None,
    jwt_issuer: Annotated[
        str | None, typer.Option("--jwt-issuer", help="accept JWTs from this issuer (iss)")
    ] = None,
    jwt_audience: Annotated[
        str | None, typer.Option("--jwt-audience", help="accept JWTs for this audience (aud)")
    ] = None,
    jwt_secret_file: Annotated[
        Path | None,
        typer.Option(
            "--jwt-secret-file",
            help=f"file holding the HS256 secret (or set {JWT_SECRET_ENV})",
        ),
    ] = None,
    jwt_jwks: Annotated[
        str | None,
        typer.Option("--jwt-jwks", help="JWKS file or https:// URL of the RS256/ES256 keys"),
    ] = None,
    jwt_leeway: Annotated[
        float, typer.Option("--jwt-leeway", min=0, max=300, help="clock skew allowed, seconds")
    ] = 30.0,
    jwt_tenant_claim: Annotated[str, typer.Option("--jwt-tenant-claim")] = "tenant",
    jwt_roles_claim: Annotated[str, typer.Option("--jwt-roles-claim")] = "roles",
    api_keys: Annotated[
        str | None,
        typer.Option(
            "--api-keys",
            envvar="EVENTFOLD_CONTROL",
            help="accept API keys kept in this control database (with --tenants: its own)",
        ),
    ] = None,
    api_key_cache: Annotated[
        float,
        typer.Option(
            "--api-key-cache",
            min=0,
            max=3600,
            help="seconds a checked API key is trusted without the database "
            "(a revocation then takes up to that long)",
        ),
    ] = 0.0,
    tenants: TenantsOption = None,
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="encrypt personal fields per data subject (key in EVENTFOLD_MASTER_KEY "
            "or --master-key-file)",
        ),
    ] = False,
    keys: Annotated[
        str | None, typer.Option("--keys", help="subject key store URL (default: the store)")
    ] = None,
    master_key_file: Annotated[
        Path | None, typer.Option("--master-key-file", help="file holding the hex master key")
    ] = None,
    require_metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--require-metadata",
            help="metadata every event must carry: actor, correlation_id, reason … (repeat)",
        ),
    ] = None,
    nats_user: NatsUserOption = None,
    nats_password_file: NatsPasswordFileOption = None,
    nats_token_file: NatsTokenFileOption = None,
    ssl_certfile: Annotated[
        Path | None, typer.Option("--ssl-certfile", help="serve HTTPS with this certificate")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option("--ssl-keyfile", help="the certificate's private key")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="serve without authentication on a non-loopback address (logged loudly)",
        ),
    ] = False,
) -> None:
    """Serve the command and query APIs (OpenAPI at /schema on each)."""
    from eventfold.services.runtime import ServeConfig, ServiceDefinition
    from eventfold.services.server import serve as run_servers

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    definition = load_definition(app)
    assert isinstance(definition, ServiceDefinition)
    try:
        _no_passwords_in_argv(ctx, ("store", "read_model", "outcomes", "nats", "keys", "api_keys"))
        tenancy = Tenancy.from_file(tenants) if tenants is not None else None
        config = ServeConfig(
            role=role,  # type: ignore[arg-type]
            store=store,
            read_model=read_model,
            outcomes=outcomes,
            nats=nats,
            prefix=prefix,
            replicas=replicas,
            workers=workers,
            ack_wait=ack_wait,
            max_body_size=max_body,
            encrypt=encrypt,
            keys=keys,
            master_key_file=str(master_key_file) if master_key_file else None,
            audit=tuple(require_metadata or ()),
            tenancy=tenancy,
            nats_user=nats_user,
            nats_password_file=str(nats_password_file) if nats_password_file else None,
            nats_token_file=str(nats_token_file) if nats_token_file else None,
        )
        ssl: dict[str, Any] | None = None
        if ssl_certfile is not None:
            ssl = {"ssl_certfile": str(ssl_certfile)}
            if ssl_keyfile is not None:
                ssl["ssl_keyfile"] = str(ssl_keyfile)
        key_store_url = api_keys or (tenancy.control if tenancy is not None else None)

        async def main() -> None:
            key_store = open_api_keys(key_store_url) if key_store_url else None
            try:
                security = _security(
                    policy,
                    key_store,
                    key_cache=api_key_cache,
                    issuer=jwt_issuer,
                    audience=jwt_audience,
                    secret_file=jwt_secret_file,
                    jwks=jwt_jwks,
                    leeway=jwt_leeway,
                    tenant_claim=jwt_tenant_claim,
                    roles_claim=jwt_roles_claim,
                )
                await run_servers(
                    definition,
                    config,
                    host=host,
                    command_port=command_port,
                    query_port=query_port,
                    log_level=log_level,
                    announce=lambda line: print(line, flush=True),
                    security=security,
                    insecure=insecure,
                    ssl=ssl,
                )
            finally:
                if key_store is not None:
                    await key_store.close()

        asyncio.run(main())
    except EventfoldError as exc:
        errors().print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def _no_passwords_in_argv(ctx: typer.Context, names: tuple[str, ...]) -> None:
    """A password on the command line is visible to everyone on the machine
    (``ps``, shell history): refuse URLs carrying one there."""
    from urllib.parse import urlsplit

    for name in names:
        value = ctx.params.get(name)
        source = ctx.get_parameter_source(name)
        if not isinstance(value, str) or source is None or source.name != "COMMANDLINE":
            continue
        for url in value.split(","):
            try:
                password = urlsplit(url).password
            except ValueError:
                password = None
            if password:
                option = "--" + name.replace("_", "-")
                raise ConfigurationError(
                    f"{option} carries a password on the command line, where every user of "
                    "this machine can read it: use an environment variable (EVENTFOLD_STORE, "
                    "EVENTFOLD_NATS …), a password file (PGPASSFILE, --nats-password-file) "
                    "or PGPASSWORD instead",
                    setting=name,
                )


def _security(
    policy: Path | None,
    key_store: APIKeyStore | None,
    *,
    key_cache: float,
    issuer: str | None,
    audience: str | None,
    secret_file: Path | None,
    jwks: str | None,
    leeway: float,
    tenant_claim: str,
    roles_claim: str,
) -> Security | None:
    """The authenticators and policy the options name (None: no authentication)."""
    authenticators: list[Authenticator] = []
    secret = read_secret(env=JWT_SECRET_ENV, file=secret_file)
    if issuer is not None or audience is not None or jwks is not None or secret_file is not None:
        if issuer is None or audience is None:
            raise ConfigurationError("JWT needs --jwt-issuer and --jwt-audience", setting="jwt")
        authenticators.append(
            JWTAuthenticator(
                issuer=issuer,
                audience=audience,
                secret=secret.encode() if secret is not None else None,
                jwks=jwks,
                leeway=leeway,
                tenant_claim=tenant_claim,
                roles_claim=roles_claim,
            )
        )
    if key_store is not None:
        authenticators.append(APIKeyAuthenticator(key_store, cache_seconds=key_cache))
    if not authenticators:
        if policy is not None:
            raise ConfigurationError("--policy needs authentication (--jwt-* or --api-keys)")
        return None
    if policy is None:
        raise ConfigurationError(
            "authentication needs a --policy: without one every request would be denied",
            setting="policy",
        )
    return Security(authenticators, Policy.from_file(policy))
