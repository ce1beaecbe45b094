# k8snet: the two commands are `make demo` and `make test` (both run `setup` first).
# Everything here is idempotent: a second `make setup` does nothing that is already done.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := openvswitch-switch openvswitch-common mininet iperf3 iputils-ping fping \
                ethtool tcpdump iproute2 procps net-tools util-linux nftables conntrack \
                unbound bind9-dnsutils curl nginx-light bird2
# Ryu 4.34 only installs with an old setuptools (see README, "Running under Ryu").
PIP_CONSTRAINTS := .ci/constraints.txt

.PHONY: setup deb venv demo test test-quick bench clean distclean

setup: deb venv

deb:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml $(PIP_CONSTRAINTS)
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	PIP_CONSTRAINT=$(abspath $(PIP_CONSTRAINTS)) $(PY) -m pip install -q --disable-pip-version-check -e '.[test,ryu]'
	touch $@

venv: $(VENV)/.installed

demo: setup
	$(VENV)/bin/k8snet run all

test: setup
	$(VENV)/bin/python -m pytest

test-quick: setup
	$(VENV)/bin/python -m pytest -m "not emulation"

bench: setup
	$(VENV)/bin/python bench/bringup.py
	$(VENV)/bin/python bench/throughput.py
	$(VENV)/bin/python bench/services.py
	$(VENV)/bin/python bench/policy.py
	$(VENV)/bin/python bench/trace.py
	$(VENV)/bin/python bench/faults.py

clean:
	-$(VENV)/bin/k8snet clean

distclean: clean
	rm -rf $(VENV) *.egg-info
