# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The options of one consumer's export, shared by klutch_export_request and klutch_bind.
    DOCUMENTATION = r"""
options:
  consumer:
    description:
      - Who binds, for example the app cluster's inventory name; with the app cluster's id it forms the
        identity C(<consumer>#<cluster id>) that finds the consumer's namespace again on every run.
    type: str
    required: true
  consumer_scope:
    description:
      - V(Namespaced) lets the consumer work only in the namespaces mapped for it; V(Cluster) grants its
        kinds cluster-wide. Becomes the exports' C(informerScope).
    type: str
    choices: [Namespaced, Cluster]
    default: Namespaced
  external_address:
    description:
      - The control plane's address as app clusters reach it, written into the consumer's
        kubeconfig; default the address this module connects to.
    type: str
  external_ca_data:
    description: Base64 PEM CA for O(external_address); default the cluster's CA from the token Secret.
    type: str
  external_server_name:
    description: The TLS server name to write into the consumer's kubeconfig.
    type: str
  provider_pretty_name:
    description: The name app clusters show for this provider (C(ClusterBinding.spec.providerPrettyName)).
    type: str
    default: klutch.bind
  previous_cluster_id:
    description:
      - The cluster id this consumer was bound under before, when its app cluster's id changed (its
        C(klutch-bind) namespace was recreated, say). Its namespace C(<consumer>#<previous_cluster_id>)
        is kept and re-annotated with the new identity, so its instances and Secrets stay.
      - Without it, a consumer that has a namespace under another cluster id is refused before anything
        is written; the message names both ids. Once the namespace carries the new identity, the option
        changes nothing and may stay set.
      - Not used to remove a consumer (O(klutch.bind.klutch_export_request#module:state=absent)).
    type: str
  rotate_after:
    description:
      - Rotate the consumer's token once it is this old, in days, hours, minutes and seconds (V(30d),
        V(12h), V(1h30m)). A new token Secret is issued and the consumer's kubeconfig rewritten with it;
        the old token keeps working for O(rotation_grace) seconds, then it is deleted and refused.
      - Konnectors pick the new kubeconfig up without a restart, from the app cluster's Secret, which
        M(klutch.bind.klutch_bind) rewrites at once, or from the control plane, which they copy it from
        whenever it changes. Run it on a schedule (an AWX schedule, say) to rotate every consumer in
        turn; a run before the token is that old changes nothing.
      - Without it, tokens do not expire (Klutch's tokens do not either).
    type: str
  rotation_grace:
    description:
      - Seconds the token that a rotation replaces keeps working, so that konnectors holding it can take
        the new one without a failed sync. V(0) refuses it at once, for a token that leaked.
      - The old token Secret is deleted by the first run of this module or the backend agent after that.
    type: int
    default: 300
  reinstate:
    description:
      - Issue new credentials to a consumer whose credentials were revoked
        (O(klutch.bind.klutch_export_request#module:state=revoked)). Without it, a revoked consumer is
        refused before anything is written, so that a rerun of a scheduled job does not undo a revocation.
    type: bool
    default: false
"""
