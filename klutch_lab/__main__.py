# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m klutch_lab up|down|status|identity|build"""

import argparse
import sys

import yaml

from klutch_lab import binaries, images
from klutch_lab.errors import LabError
from klutch_lab.lab import CROSSPLANE_CLUSTERS, DEFAULT_CLUSTERS, LAB_DIR_ENV, Lab
from klutch_lab.node import Node


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m klutch_lab",
        description="Real Kubernetes clusters on loopback ports, without containers.",
    )
    parser.add_argument("--dir", help=f"lab state directory (default: ${LAB_DIR_ENV} or ~/.cache/klutch-bind/lab)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build what is missing, start the clusters, wait until ready")
    up.add_argument("--clusters", default=",".join(DEFAULT_CLUSTERS),
                    help="comma-separated cluster names; the first is the control plane (default: %(default)s)")
    up.add_argument("--crossplane", default=",".join(CROSSPLANE_CLUSTERS),
                    help="clusters that get Crossplane, provider-kubernetes and a package registry; '' for none "
                         "(default: %(default)s)")
    up.add_argument("--nodes", default="",
                    help="clusters that get a node (containerd, kubelet, kube-scheduler) to run Pods; "
                         "needs root (default: none)")
    down = commands.add_parser("down", help="stop what `up` started and remove the lab's state")
    down.add_argument("--clusters", help="only these clusters (comma-separated); default: the whole lab")
    commands.add_parser("status", help="show the clusters and whether their processes run")
    commands.add_parser("build", help="only build (or find) the binaries, a node's included, and the images")
    identity = commands.add_parser("identity", help="mint a non-admin client-certificate kubeconfig")
    identity.add_argument("--cluster", required=True)
    identity.add_argument("--user", required=True)
    identity.add_argument("--group", action="append", default=[], help="repeat for several groups")
    return parser


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            built = {**binaries.ensure_binaries(), **binaries.ensure_crossplane(), **binaries.ensure_node()}
            for name, path in built.items():
                print(f"{name}: {path}")
            for name, image in images.ensure_images().items():
                print(f"{name}: {image.layer}")
            return 0
        lab = Lab(args.dir)
        if args.command == "up":
            lab.up(_names(args.clusters), crossplane=_names(args.crossplane), nodes=_names(args.nodes))
            for name, cluster in lab.clusters.items():
                print(f"{name}: {cluster.server}\n  kubeconfig: {cluster.admin_kubeconfig}")
                if "node" in cluster.record:
                    print(f"  node: {Node(cluster).name}")
                if cluster.pod_reachable_server:
                    print(f"  API server for Pods (of any lab node): {cluster.pod_reachable_server}")
            print(f"all clusters, one context each: {lab.kubeconfig}")
            if any("crossplane" in cluster.record for cluster in lab.clusters.values()):
                print(f"crank (Crossplane's package CLI): "
                      f"export PATH={binaries.crank_path().parent}:$PATH")
            print(f"Ansible inventory ({lab.inventory}):")
            print(yaml.safe_dump(lab.inventory_data(), sort_keys=False).rstrip())
        elif args.command == "down":
            lab.down(_names(args.clusters) if args.clusters else None)
        elif args.command == "status":
            print("\n".join(lab.status_lines()))
            return 0 if not lab.dead_components() else 1
        elif args.command == "identity":
            print(lab.cluster(args.cluster).mint_identity(args.user, args.group))
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
