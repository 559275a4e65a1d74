# Two entry points: `make run` (the whole platform on embedded defaults) and `make test`.
# Both bootstrap what they need: a .venv with the project and its dev tools.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=
# Two workers, one test module each at a time (modules own their ports and namespaces); the
# peers (PostgreSQL, Temporal) start once in the controller (tests/conftest.py).
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder
OIDC_LAB := lab/oidc
OIDC_STAMP := $(OIDC_LAB)/node_modules/.package-lock.json
# Debian packages of the lab: FRR and sshd in namespaces (the Ethernet fabric), user-mode-linux
# and kmod (leaf switches with a kernel that has VRFs), ibsim and OpenSM (an InfiniBand subnet),
# slurm-wlm and munge (the lab nodes' real Slurm daemons, lab/slurm), QEMU with its iPXE ROMs,
# busybox-static and cpio (QEMU nodes that PXE boot the lab image, lab/qemu.py).
LAB_APT := frr openssh-server user-mode-linux kmod ibsim-utils libumad2sim0 opensm infiniband-diags \
	iputils-arping \
	slurm-wlm munge qemu-system-x86 ipxe-qemu busybox-static cpio e2fsprogs
LAB_APT_STAMP := $(VENV)/.lab-apt-stamp
# The lab's golden image for QEMU nodes, built from Debian packages (images/lab_qemu/).
LAB_IMAGE_DIR := images/lab_qemu
LAB_IMAGE := $(LAB_IMAGE_DIR)/build/initrd.img

.PHONY: run test lint bench clean lab-image histories

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	# fake-switches (stateful Cisco/Arista CLI for the switch-dialect tests) still pins an
	# ancient Twisted; it runs on the current one, installed by the dev extra.
	$(BIN)/python -m pip install --quiet --no-deps fake-switches==1.5.0
	touch $(STAMP)

# A real OpenID provider (npm oidc-provider) for the identity tests; Node from apt if missing.
$(OIDC_STAMP): $(OIDC_LAB)/package-lock.json
	command -v npm >/dev/null || { test "$$(id -u)" = 0 && apt-get update -q && apt-get install -y -q nodejs npm; }
	npm ci --prefix $(OIDC_LAB) --no-audit --no-fund --loglevel=error

# Installed when missing (as root: the lab needs root for namespaces anyway).
$(LAB_APT_STAMP): Makefile | $(STAMP)
	missing=$$(for p in $(LAB_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  test "$$(id -u)" = 0 || { echo "need root to apt-get install $$missing" >&2; exit 1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	touch $(LAB_APT_STAMP)

# The network lab's packages as root; as another user `up` runs without the network lab and
# says why.
run: $(STAMP)
	if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory $(LAB_APT_STAMP) $(LAB_IMAGE); fi
	$(BIN)/metalplane up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) $(OIDC_STAMP) $(LAB_APT_STAMP) $(LAB_IMAGE) lint
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Histories of real runs for the replay test (tests/workflows/test_replay.py): these modules run
# every workflow to success, failure with compensation and cancellation; tests/histories/choose.py
# keeps the smallest history of each distinct command sequence.
HISTORY_MODULES := tests/integration/test_provision.py tests/integration/test_networks.py \
	tests/integration/test_fabric_network.py tests/integration/test_network_ib.py \
	tests/integration/test_clusters.py tests/integration/test_qemu_node.py \
	tests/integration/test_power_sync.py tests/integration/test_cleaning.py \
	tests/integration/test_commissioning.py tests/integration/test_rescue.py
histories: $(STAMP) $(LAB_APT_STAMP) $(LAB_IMAGE)
	rm -rf .metalplane/histories
	METALPLANE_RECORD_HISTORIES=$(CURDIR)/.metalplane/histories $(BIN)/python -m pytest -q \
		$(HISTORY_MODULES)
	$(BIN)/python -m tests.histories.choose .metalplane/histories

# The Debian cloud kernel and an initramfs with the node agent (downloads the kernel package).
lab-image: $(LAB_IMAGE)
$(LAB_IMAGE): $(LAB_IMAGE_DIR)/build.sh $(LAB_IMAGE_DIR)/init $(LAB_IMAGE_DIR)/metalplane-agent \
		$(LAB_IMAGE_DIR)/udhcpc.script | $(LAB_APT_STAMP)
	sh $(LAB_IMAGE_DIR)/build.sh $(LAB_IMAGE_DIR)/build

# Provisioning at scale, the power-state sync over 500 nodes, tenant clusters at once (real Slurm daemons: needs root), then QEMU
# nodes that really PXE boot.
bench: $(STAMP)
	$(BIN)/python -m bench.provision $(ARGS)
	$(BIN)/python -m bench.power_sync $(POWER_SYNC_ARGS)
	$(BIN)/python -m bench.clusters $(CLUSTER_ARGS)
	$(MAKE) --no-print-directory $(LAB_IMAGE)
	$(BIN)/python -m bench.qemu_boot $(QEMU_ARGS)

clean:
	rm -rf $(VENV) .metalplane .pytest_cache .ruff_cache
