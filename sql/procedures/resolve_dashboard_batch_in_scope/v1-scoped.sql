-- batchflag-db: resolve_dashboard_batch_in_scope, version 1, for an installation with a
-- scope column (the Alembic operation create_current_flag(scope_column=...)). Once
-- released, never edit this file; a change is a new file.
--
-- A template: ${table}, ${id}, ${key}, ${status}, ${scope} are the installation's
-- quoted names, ${scope_type} the scope column's type (so p_scope compares with the
-- column's own collation), ${table_name} the table's name in messages.
--
-- resolve_dashboard_batch/v3.sql within one scope: every step looks only at rows whose
-- scope column equals p_scope, through the indexes (scope, key) and (scope, status,
-- id). Returns one row (batch_id, reason), or none when the scope has no rows.
-- Errors (SQLSTATE 45000): 31001 when p_requested_id is 0 or negative, 31002 when no
-- row of that scope has that id. The last step (most_recent) reads the scope's
-- entries of the (scope, key) index: it is reached only when no batch of the scope is
-- current, in progress or incomplete.
CREATE PROCEDURE resolve_dashboard_batch_in_scope(IN p_requested_id BIGINT, IN p_scope ${scope_type})
    READS SQL DATA
    SQL SECURITY DEFINER
    COMMENT 'batchflag-db v1 scoped'
BEGIN
    DECLARE v_own_txn TINYINT DEFAULT 0;
    DECLARE v_in_txn TINYINT DEFAULT 0;
    DECLARE v_id BIGINT DEFAULT NULL;
    DECLARE v_reason VARCHAR(16) DEFAULT NULL;
    DECLARE v_row BIGINT DEFAULT NULL;
    DECLARE v_last BIGINT DEFAULT NULL;
    DECLARE v_incomplete TINYINT DEFAULT NULL;
    DECLARE v_message VARCHAR(255);
    DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        IF v_own_txn = 1 THEN
            ROLLBACK;
        END IF;
        RESIGNAL;
    END;

    IF p_requested_id IS NOT NULL AND p_requested_id <= 0 THEN
        SET v_message = CONCAT('invalid batch id ', p_requested_id,
                               ': a batch id is a positive integer');
        SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31001, MESSAGE_TEXT = v_message;
    END IF;

    -- Inside a transaction already? (The same test as set_current_batch.)
    IF @@autocommit = 0 THEN
        SET v_in_txn = 1;
    ELSE
        BEGIN
            DECLARE EXIT HANDLER FOR 1568 SET v_in_txn = 1;
            SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
        END;
    END IF;
    IF v_in_txn = 0 THEN
        START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;
        SET v_own_txn = 1;
    END IF;

    IF p_requested_id IS NOT NULL THEN
        SELECT ${id} INTO v_id FROM ${table} WHERE ${id} = p_requested_id AND ${scope} = p_scope;
        IF v_id IS NULL THEN
            SET v_message = CONCAT('batch ', p_requested_id, ' does not exist in ${table_name} for that scope');
            SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31002, MESSAGE_TEXT = v_message;
        END IF;
        SET v_reason = 'requested';
    END IF;

    IF v_id IS NULL THEN
        SELECT ${id} INTO v_id FROM ${table} WHERE ${scope} = p_scope AND ${key} = 1;
        IF v_id IS NOT NULL THEN
            SET v_reason = 'current_flag';
        END IF;
    END IF;

    IF v_id IS NULL THEN
        SELECT MAX(${id}) INTO v_id FROM ${table} WHERE ${scope} = p_scope AND ${status} = 'InProgress';
        IF v_id IS NOT NULL THEN
            SET v_reason = 'in_progress';
        END IF;
    END IF;

    IF v_id IS NULL THEN
        -- The walk: see "What changed from version 1" above.
        SELECT ${id} INTO v_id FROM ${table} WHERE ${scope} = p_scope AND ${status} IS NULL
            ORDER BY ${id} DESC LIMIT 1;
        SELECT ${id}, ${status} <> 'Completed' INTO v_row, v_incomplete FROM ${table}
            WHERE ${scope} = p_scope AND ${status} IS NOT NULL
            ORDER BY ${status} DESC, ${id} DESC LIMIT 1;
        WHILE v_row IS NOT NULL DO
            IF v_incomplete = 1 AND (v_id IS NULL OR v_row > v_id) THEN
                SET v_id = v_row;
            END IF;
            SET v_last = v_row;
            SET v_row = NULL;
            SELECT b.${id}, b.${status} <> 'Completed' INTO v_row, v_incomplete
                FROM ${table} AS b
                WHERE b.${scope} = p_scope
                    AND b.${status} < (SELECT p.${status} FROM ${table} AS p WHERE p.${id} = v_last)
                ORDER BY b.${status} DESC, b.${id} DESC LIMIT 1;
        END WHILE;
        IF v_id IS NOT NULL THEN
            SET v_reason = 'incomplete';
        END IF;
    END IF;

    IF v_id IS NULL THEN
        SELECT MAX(${id}) INTO v_id FROM ${table} WHERE ${scope} = p_scope;
        IF v_id IS NOT NULL THEN
            SET v_reason = 'most_recent';
        END IF;
    END IF;

    IF v_own_txn = 1 THEN
        COMMIT;
        SET v_own_txn = 0;
    END IF;
    SELECT v_id AS batch_id, v_reason AS reason FROM DUAL WHERE v_id IS NOT NULL;
END
