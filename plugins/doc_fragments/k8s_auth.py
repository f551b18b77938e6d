# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - The kubeconfig to connect with, as a file path (several paths joined with C(:) are merged,
        first wins), as a dict, or as an inline YAML or JSON document.
      - Tokens, passwords and keys of an inline kubeconfig are hidden from logs and output.
      - When no connection option is set, the in-cluster service account is used if present, then
        E(KUBECONFIG) or C(~/.kube/config).
      - Can also be set with E(K8S_AUTH_KUBECONFIG).
    type: raw
  context:
    description:
      - The kubeconfig context to use; default is the kubeconfig's current context.
      - Can also be set with E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - The API server URL, for example V(https://cluster.example.com:6443).
      - With O(api_key), O(username) or O(client_cert) it is used without a kubeconfig; next to a
        kubeconfig it overrides the server.
      - Can also be set with E(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - A bearer token for the API server.
      - Can also be set with E(K8S_AUTH_API_KEY).
    type: str
  username:
    description:
      - A user name for HTTP basic authentication, for API servers behind a proxy that accepts it.
      - Can also be set with E(K8S_AUTH_USERNAME).
    type: str
  password:
    description:
      - The password for O(username).
      - Can also be set with E(K8S_AUTH_PASSWORD).
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - Can also be set with E(K8S_AUTH_VALIDATE_CERTS) or E(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to a CA certificate that signed the API server's certificate.
      - Can also be set with E(K8S_AUTH_CA_CERT) or E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate for TLS client authentication.
      - Can also be set with E(K8S_AUTH_CLIENT_CERT) or E(K8S_AUTH_CERT_FILE).
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the key of O(client_cert).
      - Can also be set with E(K8S_AUTH_CLIENT_KEY) or E(K8S_AUTH_KEY_FILE).
    type: path
    aliases: [key_file]
  proxy:
    description:
      - An HTTP proxy URL for requests to the API server.
      - Can also be set with E(K8S_AUTH_PROXY).
    type: str
  no_proxy:
    description:
      - Comma-separated hosts, domains, IP addresses or CIDR ranges reached without O(proxy).
      - Can also be set with E(K8S_AUTH_NO_PROXY).
    type: str
  impersonate_user:
    description:
      - A user to act as, with the impersonation rights of the authenticated identity.
      - Can also be set with E(K8S_AUTH_IMPERSONATE_USER).
    type: str
  impersonate_groups:
    description:
      - Groups to act as, with O(impersonate_user).
      - Can also be set with E(K8S_AUTH_IMPERSONATE_GROUPS), comma-separated.
    type: list
    elements: str
requirements:
  - kubernetes >= 24.2.0
  - PyYAML >= 6.0.1
  - urllib3 >= 1.26
notes:
  - Requests go to known API paths; the API is never discovered as a whole. A kind that is not
    built in is looked up in its own group version only.
  - E(HTTPS_PROXY) and E(NO_PROXY) are not read; set O(proxy) and O(no_proxy), or the kubeconfig's C(proxy-url).
"""
