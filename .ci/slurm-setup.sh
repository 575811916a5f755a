#!/usr/bin/env bash
# SLURM for the cluster tests (tests/test_slurm.py).
#   bash .ci/slurm-setup.sh install   install munge + slurmctld + slurmd + clients (Debian/Ubuntu), if missing
#   bash .ci/slurm-setup.sh check     print what is installed; exit 1 if something is missing
# Nothing is configured or started here: the tests write a one-node slurm.conf into a temporary
# folder and start/stop munged, slurmctld and slurmd themselves (tests/slurm/cluster.py).
set -euo pipefail

binaries=(munged slurmctld slurmd sbatch squeue scontrol sinfo)

missing() {
    local b out=()
    for b in "${binaries[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null || out+=("$b")
    done
    echo "${out[@]:-}"
}

case "${1:-}" in
    install)
        if [ -z "$(missing)" ]; then
            echo "slurm-setup: already installed"
            exit 0
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
        left="$(missing)"
        if [ -n "$left" ]; then
            echo "slurm-setup: still missing after install: $left" >&2
            exit 1
        fi
        echo "slurm-setup: installed $(PATH="$PATH:/usr/sbin" slurmctld -V)"
        ;;
    check)
        left="$(missing)"
        if [ -n "$left" ]; then
            echo "slurm-setup: missing: $left" >&2
            exit 1
        fi
        echo "slurm-setup: $(PATH="$PATH:/usr/sbin" slurmctld -V), $(munged -V 2>&1 | head -1)"
        ;;
    *)
        echo "usage: $0 install|check" >&2
        exit 2
        ;;
esac
