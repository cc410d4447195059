"""Broker provisioning: Mosquitto's configuration, users, ACL and TLS for one site.

Layout of the provisioning directory (``<hub data dir>/broker/``, see :class:`BrokerPaths`)::

    inventory.json    settings, the hub user, every gateway (id, site, auth, dates, serial)
    mosquitto.conf    the broker's configuration (paths only, no secrets)
    passwd            password hashes ($7$, PBKDF2-SHA512), as mosquitto_passwd writes them
    acl               one block per user: a gateway speaks only for itself
    ca.pem, ca.key    the site CA (the key is 0600 and never leaves this directory)
    server.pem/.key   the broker's certificate for its host names and addresses
    crl.pem           revoked client certificates (``crlfile`` of the mTLS listener)
    hub.env           the hub's MQTT password for its EnvironmentFile (0600)
    state/            the broker's persistence and pid file (writable by its user)

Two ways for a gateway to authenticate, both over TLS against the site CA: a password (port
8883, the default) or a client certificate whose CN is the gateway id (port 8884).  Revocation
removes the password, revokes the certificate in the CRL and drops the gateway's ACL rights.
"""

from __future__ import annotations

from hub.broker.acl import AclRule, AclUser, gateway_rules, hub_rules, render_acl
from hub.broker.bundle import (
    AuthMode,
    Bundle,
    BundleContent,
    BundleOptions,
    enrol_command,
    write_bundle,
)
from hub.broker.conf import BrokerPaths, BrokerSettings, render_mosquitto_conf
from hub.broker.errors import BrokerError
from hub.broker.passwords import generate_password, hash_password, verify_password
from hub.broker.pki import KeyPair, build_crl, create_ca, issue_client_cert, issue_server_cert
from hub.broker.provisioning import (
    DEFAULT_HUB_USER,
    HUB_CREDENTIAL_VAR,
    GatewayRecord,
    HubUser,
    InitResult,
    Inventory,
    Provisioned,
    add_gateway,
    add_hub_user,
    init_broker,
    list_gateways,
    load_inventory,
    reload_broker,
    revoke_gateway,
    rotate_gateway,
)

__all__ = [
    "DEFAULT_HUB_USER",
    "HUB_CREDENTIAL_VAR",
    "AclRule",
    "AclUser",
    "AuthMode",
    "BrokerError",
    "BrokerPaths",
    "BrokerSettings",
    "Bundle",
    "BundleContent",
    "BundleOptions",
    "GatewayRecord",
    "HubUser",
    "InitResult",
    "Inventory",
    "KeyPair",
    "Provisioned",
    "add_gateway",
    "add_hub_user",
    "build_crl",
    "create_ca",
    "enrol_command",
    "gateway_rules",
    "generate_password",
    "hash_password",
    "hub_rules",
    "init_broker",
    "issue_client_cert",
    "issue_server_cert",
    "list_gateways",
    "load_inventory",
    "reload_broker",
    "render_acl",
    "render_mosquitto_conf",
    "revoke_gateway",
    "rotate_gateway",
    "verify_password",
    "write_bundle",
]
