# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lab of real Kubernetes clusters (etcd, kube-apiserver, kube-controller-manager) without containers.

    from klutch_lab import Lab
    lab = Lab().up(["control-plane", "app"])
    lab.cluster("app").admin_kubeconfig
"""

from klutch_lab.audit import AuditLog
from klutch_lab.cluster import Cluster
from klutch_lab.errors import LabError
from klutch_lab.lab import DEFAULT_CLUSTERS, Lab

__all__ = ["AuditLog", "Cluster", "DEFAULT_CLUSTERS", "Lab", "LabError"]
