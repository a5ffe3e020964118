"""The procedures' semantics, called the way any client calls them: PyMySQL and the mariadb CLI."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pymysql
import pytest
from pymysql.constants import SERVER_STATUS

from tests.conftest import call_procedure, current_rows


def in_transaction(conn: pymysql.Connection) -> bool:
    """Whether the session is inside a transaction, from the server's status flags.

    Portable: MySQL has no @@in_transaction, but both servers report SERVER_STATUS_IN_TRANS.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    return bool(conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


def errno_of(exc: pymysql.MySQLError) -> int:
    errno: int = exc.args[0]
    return errno + 65536 if errno < 0 else errno


class TestSetCurrentBatch:
    def test_makes_the_batch_the_only_current_one(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """set_current_batch moves the flag: the new batch is current, the old one is not."""
        a, _, c = add_batches(3)
        conn = connect_db(autocommit=True)
        assert call_procedure(conn, f"CALL set_current_batch({a})") == [(a, None, 1)]
        assert current_rows(conn) == [a]
        assert call_procedure(conn, f"CALL set_current_batch({c})") == [(c, a, 1)]
        assert current_rows(conn) == [c]

    def test_already_current_is_success_without_change(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """Setting the current batch again succeeds and changes no row."""
        (a,) = add_batches(1)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with conn.cursor() as cur:
            cur.execute("SELECT updatedAt FROM batchStatus WHERE id = %s", (a,))
            before = cur.fetchone()
        assert call_procedure(conn, f"CALL set_current_batch({a})") == [(a, a, 0)]
        with conn.cursor() as cur:
            cur.execute("SELECT updatedAt FROM batchStatus WHERE id = %s", (a,))
            assert cur.fetchone() == before
        assert current_rows(conn) == [a]

    @pytest.mark.parametrize(
        ("arg", "shown", "errno"),
        [
            ("NULL", "NULL", 31001),
            ("0", "0", 31001),
            ("-7", "-7", 31001),
            ("999999", "999999", 31002),
        ],
    )
    def test_bad_ids_signal_and_change_nothing(
        self,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
        arg: str,
        shown: str,
        errno: int,
    ) -> None:
        """NULL, zero, negative or unknown ids raise SQLSTATE 45000 naming the id; nothing changes."""
        (a,) = add_batches(1)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with pytest.raises(pymysql.MySQLError) as info:
            call_procedure(conn, f"CALL set_current_batch({arg})")
        assert errno_of(info.value) == errno
        assert shown in info.value.args[1]
        assert current_rows(conn) == [a]
        # the session is still usable and not inside a stray transaction
        assert not in_transaction(conn)

    def test_beyond_bigint_is_refused(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """An id beyond BIGINT is refused by the server's parameter check; nothing changes."""
        (a,) = add_batches(1)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with pytest.raises(pymysql.MySQLError):
            call_procedure(conn, "CALL set_current_batch(99999999999999999999)")
        assert current_rows(conn) == [a]


class TestUnsetCurrentBatch:
    def test_clears_the_current_batch(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """unset_current_batch on the current batch leaves no batch current."""
        a, _ = add_batches(2)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        assert call_procedure(conn, f"CALL unset_current_batch({a})") == [(a, 1)]
        assert current_rows(conn) == []

    def test_non_current_batch_is_a_no_op(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """unset_current_batch on another batch changes nothing."""
        a, b = add_batches(2)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        assert call_procedure(conn, f"CALL unset_current_batch({b})") == [(b, 0)]
        assert current_rows(conn) == [a]

    @pytest.mark.parametrize(("arg", "errno"), [("NULL", 31001), ("-1", 31001), ("424242", 31002)])
    def test_bad_ids_signal(
        self,
        connect_db: Callable[..., pymysql.Connection],
        add_batches: Callable[[int], list[int]],
        arg: str,
        errno: int,
    ) -> None:
        """unset_current_batch refuses NULL, negative and unknown ids, changing nothing."""
        (a,) = add_batches(1)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with pytest.raises(pymysql.MySQLError) as info:
            call_procedure(conn, f"CALL unset_current_batch({arg})")
        assert errno_of(info.value) == errno
        assert current_rows(conn) == [a]


class TestTransactions:
    def test_autocommit_call_commits_its_own_work(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """With autocommit and no transaction, another session sees the flip at once."""
        a, b = add_batches(2)
        writer = connect_db(autocommit=True)
        reader = connect_db(autocommit=True)
        call_procedure(writer, f"CALL set_current_batch({a})")
        assert current_rows(reader) == [a]
        call_procedure(writer, f"CALL set_current_batch({b})")
        assert current_rows(reader) == [b]
        assert not in_transaction(writer)

    def test_rollback_of_callers_transaction_keeps_previous(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """A CALL inside a transaction that is rolled back leaves the previous current batch."""
        a, b = add_batches(2)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        conn.begin()
        call_procedure(conn, f"CALL set_current_batch({b})")
        assert in_transaction(conn), "the CALL must not commit"
        assert current_rows(connect_db(autocommit=True)) == [a]
        conn.rollback()
        assert current_rows(conn) == [a]

    def test_commit_of_callers_transaction_applies_both(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """The caller's other work and the flip commit together, only at the caller's COMMIT."""
        a, b = add_batches(2)
        conn = connect_db(autocommit=False)
        other = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with conn.cursor() as cur:
            cur.execute("UPDATE batchStatus SET batchStatus = 'InProgress' WHERE id = %s", (b,))
        call_procedure(conn, f"CALL set_current_batch({b})")
        assert current_rows(other) == []
        conn.commit()
        assert current_rows(other) == [b]
        with other.cursor() as cur:
            cur.execute("SELECT batchStatus FROM batchStatus WHERE id = %s", (b,))
            assert cur.fetchone() == ("InProgress",)

    def test_caller_work_is_never_committed_by_the_call(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """An INSERT made before the CALL is rolled back with the caller's ROLLBACK."""
        (a,) = add_batches(1)
        conn = connect_db(autocommit=True)
        conn.begin()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO batchStatus (batchDate, batchNumber) VALUES ('2026-12-01', 9)")
        call_procedure(conn, f"CALL set_current_batch({a})")
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM batchStatus")
            assert cur.fetchone() == (1,)
        assert current_rows(conn) == []

    def test_failed_call_undoes_only_its_own_work(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """An error inside the caller's transaction keeps the caller's earlier work and flips."""
        a, b = add_batches(2)
        conn = connect_db(autocommit=False)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with conn.cursor() as cur:
            cur.execute("UPDATE batchStatus SET batchStatus = 'Failed' WHERE id = %s", (b,))
        with pytest.raises(pymysql.MySQLError):
            call_procedure(conn, "CALL set_current_batch(987654)")
        assert in_transaction(conn), "the caller's transaction is still open"
        conn.commit()
        other = connect_db(autocommit=True)
        assert current_rows(other) == [a]
        with other.cursor() as cur:
            cur.execute("SELECT batchStatus FROM batchStatus WHERE id = %s", (b,))
            assert cur.fetchone() == ("Failed",)

    def test_explicit_begin_with_autocommit_on_is_joined(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """BEGIN with autocommit on is detected: the CALL joins instead of committing."""
        a, b = add_batches(2)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with conn.cursor() as cur:
            cur.execute("BEGIN")
        call_procedure(conn, f"CALL set_current_batch({b})")
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
        assert current_rows(conn) == [a]


class TestFromTheMariadbClient:
    def test_set_unset_and_errors(
        self,
        mysql_client: Callable[[str], subprocess.CompletedProcess[str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """The command-line client CALLs both procedures and sees the errors with their text."""
        a, b = add_batches(2)
        done = mysql_client(f"CALL set_current_batch({a}); CALL set_current_batch({b});")
        assert done.returncode == 0, done.stderr
        assert f"{b}\t{a}\t1" in done.stdout
        assert current_rows(connect_db(autocommit=True)) == [b]

        done = mysql_client(f"CALL set_current_batch({b + 1000});")
        assert done.returncode != 0
        assert "ERROR 31002 (45000)" in done.stderr
        assert f"batch {b + 1000} does not exist in batchStatus" in done.stderr

        for arg in ("NULL", "0", "-3"):
            done = mysql_client(f"CALL unset_current_batch({arg});")
            assert "ERROR 31001 (45000)" in done.stderr, arg

        done = mysql_client(f"CALL unset_current_batch({a}); CALL unset_current_batch({b});")
        assert done.returncode == 0, done.stderr
        assert current_rows(connect_db(autocommit=True)) == []

    def test_inside_a_transaction(
        self,
        mysql_client: Callable[[str], subprocess.CompletedProcess[str]],
        add_batches: Callable[[int], list[int]],
        connect_db: Callable[..., pymysql.Connection],
    ) -> None:
        """From the client too, a CALL inside BEGIN ... ROLLBACK leaves the previous batch."""
        a, b = add_batches(2)
        mysql_client(f"CALL set_current_batch({a});")
        done = mysql_client(
            f"BEGIN; CALL set_current_batch({b}); SELECT COUNT(*) AS mine FROM batchStatus "
            f"WHERE currentBatchKey = 1 AND id = {b}; ROLLBACK;"
        )
        assert done.returncode == 0, done.stderr
        assert "mine\n1" in done.stdout
        assert current_rows(connect_db(autocommit=True)) == [a]
        done = mysql_client(f"BEGIN; CALL set_current_batch({b}); COMMIT;")
        assert done.returncode == 0, done.stderr
        assert current_rows(connect_db(autocommit=True)) == [b]


class TestTheIndexRefusesASecondCurrentRow:
    def test_direct_update_of_another_row_fails(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """With one batch current, UPDATE ... SET currentBatch = 1 on another row is refused."""
        a, b = add_batches(2)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with pytest.raises(pymysql.err.IntegrityError) as info, conn.cursor() as cur:
            cur.execute("UPDATE batchStatus SET currentBatch = 1 WHERE id = %s", (b,))
        assert info.value.args[0] == 1062
        assert current_rows(conn) == [a]

    def test_any_non_zero_value_counts_as_current(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """currentBatch = 2 (or -1) is current too, so it collides with the current row."""
        a, b = add_batches(2)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        for value in (2, -1, 127):
            with pytest.raises(pymysql.err.IntegrityError), conn.cursor() as cur:
                cur.execute("UPDATE batchStatus SET currentBatch = %s WHERE id = %s", (value, b))
        assert current_rows(conn) == [a]

    def test_insert_of_a_second_current_row_fails(
        self, connect_db: Callable[..., pymysql.Connection], add_batches: Callable[[int], list[int]]
    ) -> None:
        """An INSERT with currentBatch = 1 is refused while another batch is current."""
        (a,) = add_batches(1)
        conn = connect_db(autocommit=True)
        call_procedure(conn, f"CALL set_current_batch({a})")
        with pytest.raises(pymysql.err.IntegrityError), conn.cursor() as cur:
            cur.execute(
                "INSERT INTO batchStatus (batchDate, batchNumber, currentBatch) VALUES ('2026-12-02', 1, 1)"
            )
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM batchStatus")
            assert cur.fetchone() == (1,)
