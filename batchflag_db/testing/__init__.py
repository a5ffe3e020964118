"""Test harnesses, fenced off from the product: servers, clusters, and an opt-in pytest plugin.

* :mod:`~batchflag_db.testing.kinds`: the server kinds (``mariadb-10.11``, ``mariadb-11.8``,
  ``mysql-9.7``) and where each comes from;
* :mod:`~batchflag_db.testing.debian_root`: a later Debian suite's server packages in a
  cached root, for the kinds the host does not have;
* :mod:`~batchflag_db.testing.binaries`: a kind's executables and how to run them;
* :mod:`~batchflag_db.testing.server`: one throwaway server;
* :mod:`~batchflag_db.testing.images`: a kind's container image, built here from its root;
* :mod:`~batchflag_db.testing.container`: one server in a container (start, wait, logs,
  stop, kill, re-create on its datadir, remove) and a cluster's own Docker network;
* :mod:`~batchflag_db.testing.galera`: a throwaway 3-node MariaDB Galera cluster, one
  container per node;
* :mod:`~batchflag_db.testing.grouprepl`: a throwaway 3-member MySQL Group Replication
  group, single- or multi-primary, one container per member;
* :mod:`~batchflag_db.testing.selection`: how a test session gets its server;
* :mod:`~batchflag_db.testing.plugin`: pytest fixtures (``pytest_plugins = [...]``).

Nothing here is imported by ``import batchflag_db``.
"""
