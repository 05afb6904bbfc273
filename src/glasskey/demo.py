"""Demo mode: a gateway on SQLite with one org, two funded wallets, simulated routes and two keys.

The routes serve three chat models and two embedding models, all on the simulated provider.

``demo_settings`` generates the admin token, key pepper and encryption key once and keeps them in
``<data_dir>/glasskey.toml`` (0600, in a 0700 directory): the pepper is what key hashes are checked
against and the encryption key what route credentials are sealed with, so fresh ones on every
start would silently invalidate every key and route credential created before. A file written by
an older demo, without an encryption key, gets one appended. The demo allows private upstreams:
it is a local trial, where a self-hosted model on loopback is the likely second route. ``seed_demo`` is safe
to run on every start: it funds the org and creates routes only once, but always issues two
fresh keys, because a key's full secret can never be shown again after its creation.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from glasskey.data_dir import prepare_data_dir
from glasskey.errors import NotFound
from glasskey.keys.policy import KeyPolicy
from glasskey.keys.service import KeyRecord, create_key
from glasskey.money import dollars_to_micros, format_usd
from glasskey.orgs.service import Org, Wallet, create_org, get_org, list_wallets, top_up
from glasskey.people.demo import DemoPerson, ensure_demo_people, people_banner_lines
from glasskey.pricing.catalog import Prices, get_model
from glasskey.routing.credentials import CredentialVault
from glasskey.routing.routes import Route, create_route, list_routes
from glasskey.services import Services
from glasskey.settings import Settings, load_settings

DEMO_ORG = "demo"
DEMO_CHAT_MODELS = ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash")
DEMO_EMBEDDING_MODELS = ("text-embedding-3-small", "gemini-embedding-001")
# Every demo model has an official and a routed route, and both demo keys may call each.
DEMO_MODELS = DEMO_CHAT_MODELS + DEMO_EMBEDDING_MODELS
DEMO_PROVIDER = "simulated"
SETTINGS_FILE = "glasskey.toml"
# The data directory the CLI finds by itself in the current directory (cli.base.DATA_DIR_DEFAULT).
DATA_DIR_NAME = "glasskey-data"
TOP_UP_MICROS = {"credit": dollars_to_micros("50"), "routed": dollars_to_micros("50")}
# The routed channel is cheaper than list price for the user and cheaper still for the operator.
ROUTED_PRICE_PERCENT = 60
ROUTED_COST_PERCENT = 45
EXAMPLE_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class DemoKey:
    record: KeyRecord
    full_key: str

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def settlement(self) -> str:
        return self.record.policy.settlement


@dataclass(frozen=True)
class DemoResult:
    org: Org
    wallets: list[Wallet]
    keys: list[DemoKey]
    base_url: str
    admin_token: str
    admin_docs_url: str
    created_org: bool
    data_dir: Path | None = None  # where glasskey.toml is, for the CLI hint
    people: list[DemoPerson] = field(default_factory=list)  # an owner and a member, to try both views


def _toml_string(value: str) -> str:
    """A TOML basic string: escape what TOML requires, keep everything else as it is."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def write_demo_settings_file(path: Path, data_dir: Path) -> None:
    """Write fresh secrets to ``path``, readable by its owner only; never overwrite a file."""
    text = (
        "# glasskey demo settings, generated once. Keys created earlier stay valid only as long as\n"
        "# key_pepper does not change. Use it for admin verbs: glasskey --config <this file> keys list\n"
        f"data_dir = {_toml_string(str(data_dir.resolve()))}\n"
        f"admin_token = {_toml_string(secrets.token_urlsafe(32))}\n"
        f"key_pepper = {_toml_string(secrets.token_urlsafe(32))}\n"
        f"{_encryption_key_line()}"
        "allow_private_upstreams = true\n"
    )
    # O_EXCL: two demos starting at once must not each write (and trust) different secrets.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _encryption_key_line() -> str:
    return f"encryption_key = {_toml_string(CredentialVault.generate_key())}\n"


def add_encryption_key(path: Path) -> None:
    """Append an encryption key to a settings file written before the demo made one."""
    # The lock: two demos starting at once must not both append one (a key given twice is invalid TOML).
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        try:
            if "encryption_key" in tomllib.loads(handle.read()):
                return
        except tomllib.TOMLDecodeError:
            return  # loading the settings says what is wrong with the file
        handle.write("# added by a newer glasskey: seals route credentials at rest\n" + _encryption_key_line())


def demo_settings(data_dir: Path, host: str, port: int, *, environ: dict[str, str] | None = None) -> Settings:
    """Settings of demo mode, from ``<data_dir>/glasskey.toml`` (created with new secrets if absent).

    Raises ``SettingsError`` when the file or the environment holds a wrong setting.
    """
    data_dir = Path(data_dir)
    prepare_data_dir(data_dir, create_database=False)
    path = data_dir / SETTINGS_FILE
    if not path.exists():
        # If another process wrote it first, its secrets are the ones to use.
        with contextlib.suppress(FileExistsError):
            write_demo_settings_file(path, data_dir)
    else:
        add_encryption_key(path)
    return load_settings(config_file=path, environ=environ, data_dir=data_dir, host=host, port=port)


def _percent_of(prices: Prices, percent: int) -> Prices:
    """``percent`` of each unit price, rounded down to a whole micro."""
    return Prices(
        prices.input_per_mtok_micros * percent // 100,
        prices.output_per_mtok_micros * percent // 100,
        prices.cached_per_mtok_micros * percent // 100,
    )


def _ensure_routes(services: Services) -> None:
    now = services.clock()
    with services.db.write() as conn:
        for model in DEMO_MODELS:
            existing = {r.settlement for r in list_routes(conn, model) if r.provider == DEMO_PROVIDER}
            official = get_model(conn, model).official_prices
            wanted = {
                "official": (official, official),
                "routed": (_percent_of(official, ROUTED_PRICE_PERCENT), _percent_of(official, ROUTED_COST_PERCENT)),
            }
            for settlement, (prices, costs) in wanted.items():
                if settlement in existing:
                    continue
                route = Route(
                    id="",
                    model=model,
                    provider=DEMO_PROVIDER,
                    base_url="",
                    upstream_model=model,
                    settlement=settlement,
                    prices=prices,
                    costs=costs,
                    options={"latency_ms": 0},
                )
                create_route(conn, route, now)


def _ensure_org(services: Services) -> tuple[Org, bool]:
    now = services.clock()
    with services.db.write() as conn:
        try:
            return get_org(conn, DEMO_ORG), False
        except NotFound:
            org = create_org(conn, DEMO_ORG, now)
        for kind, amount_micros in TOP_UP_MICROS.items():
            top_up(conn, org.id, kind, amount_micros, now, idempotency_key=f"demo-{kind}", memo="demo top-up")
    return org, True


def _create_keys(services: Services, org: Org) -> list[DemoKey]:
    now = services.clock()
    policies = {
        "demo-official": KeyPolicy(allowed_models=DEMO_MODELS, settlement="official", backup_routes=False),
        "demo-routed": KeyPolicy(allowed_models=DEMO_MODELS, settlement="routed", lower_cost_routes=True),
    }
    keys = []
    with services.db.write() as conn:
        for name, policy in policies.items():
            record, full_key = create_key(
                conn, pepper=services.pepper, org_id=org.id, name=name, policy=policy, now=now, owner="demo"
            )
            keys.append(DemoKey(record=record, full_key=full_key))
    return keys


def seed_demo(services: Services) -> DemoResult:
    """Make sure the demo org, its funds and routes exist, then issue two fresh keys."""
    org, created = _ensure_org(services)
    _ensure_routes(services)
    keys = _create_keys(services, org)
    people = ensure_demo_people(services, org.id)
    with services.db.read() as conn:
        wallets = list_wallets(conn, org.id)
    public_url = services.settings.effective_public_url
    return DemoResult(
        org=org,
        wallets=wallets,
        keys=keys,
        base_url=f"{public_url}/v1",
        admin_token=services.settings.admin_token.get_secret_value(),
        admin_docs_url=f"{public_url}/admin/api/docs",
        created_org=created,
        data_dir=services.settings.data_dir,
        people=people,
    )


def _cli_hint(data_dir: Path | None) -> list[str]:
    """The lines that make the admin CLI read this demo's settings, from any directory.

    The CLI looks for ``glasskey.toml`` in ``GLASSKEY_DATA_DIR``, else in ``./glasskey-data``
    (``cli.base.settings_file``); a data directory of another name, or a shell in another directory,
    needs the variable, so it is printed as a line to paste rather than described.
    """
    if data_dir is None:
        return []
    where = data_dir.resolve()
    lines = [f"# admin CLI: these two lines work from any directory (it reads {where / SETTINGS_FILE})"]
    if where.name == DATA_DIR_NAME:
        lines.append(f"#   (from {where.parent} it finds ./{DATA_DIR_NAME} without the export)")
    return [*lines, f"export GLASSKEY_DATA_DIR={shlex.quote(str(where))}", "glasskey keys list"]


def _tool_example() -> str:
    """A whole tool round trip with the openai SDK: the model calls the tool, then answers from its result."""
    tools = (
        '[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", '
        '"properties": {"city": {"type": "string"}}, "required": ["city"]}}}]'
    )
    create = f'client.chat.completions.create(model="{EXAMPLE_MODEL}", messages=messages, tools=tools)'
    return (
        f"from openai import OpenAI; client = OpenAI(); tools = {tools}; "
        'messages = [{"role": "user", "content": "What is the weather in Paris?"}]; '
        f"asked = {create}.choices[0].message; call = asked.tool_calls[0]; "
        'print("tool call:", call.function.name, call.function.arguments); '
        'messages += [asked.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, '
        '"content": "18 C and sunny"}]; '
        f'print("answer:", {create}.choices[0].message.content)'
    )


def format_demo_banner(result: DemoResult) -> str:
    """What a demo start prints: per key, shell lines to paste; then the admin token."""
    chat_body = '{"model": "' + EXAMPLE_MODEL + '", "messages": [{"role": "user", "content": "Hello"}]}'
    python_example = (
        "from openai import OpenAI; client = OpenAI(); "
        f'print(client.chat.completions.create(model="{EXAMPLE_MODEL}", '
        'messages=[{"role":"user","content":"Hello"}]).choices[0].message.content)'
    )
    funded = "funded" if result.created_org else "reused"
    lines = [
        f"# glasskey demo: org {result.org.name!r} ({result.org.id}), {funded}",
        *(f"#   {w.kind} wallet: {format_usd(w.balance.available_micros)} available" for w in result.wallets),
        "# Two new keys were created. Their secrets are shown now and never again.",
    ]
    for key in result.keys:
        wallet = "credit wallet, official list prices" if key.settlement == "official" else "routed wallet, lower cost"
        lines += [
            "",
            f"# --- key {key.name} ({key.record.prefix}): settlement {key.settlement} ({wallet})",
            f"export OPENAI_BASE_URL={result.base_url}",
            f"export OPENAI_API_KEY={key.full_key}",
            f'curl $OPENAI_BASE_URL/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY" '
            f"-H \"Content-Type: application/json\" -d '{chat_body}'",
            f"python -c '{python_example}'",
            "# the key explains itself: models, prices, wallet, receipts",
            'curl $OPENAI_BASE_URL/key -H "Authorization: Bearer $OPENAI_API_KEY"',
        ]
    lines += [
        "",
        "# --- a tool round trip (with either key's lines above): the model asks for get_weather, the",
        "#     script answers with the tool's result, and the model answers from it",
        f"python -c '{_tool_example()}'",
        "",
        "# --- admin",
        f"export GLASSKEY_ADMIN_TOKEN={result.admin_token}",
        f"# admin API docs: {result.admin_docs_url}",
        f"# dashboard: {result.admin_docs_url.removesuffix('/admin/api/docs')}/ (sign in with the admin token)",
        *_cli_hint(result.data_dir),
        *people_banner_lines(result.people, result.admin_docs_url.removesuffix("/admin/api/docs")),
        "",
    ]
    return "\n".join(lines)
