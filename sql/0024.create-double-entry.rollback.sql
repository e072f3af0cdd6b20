DROP TABLE reversals;
DROP SEQUENCE reversal_ids;
DROP TABLE transfers;
DROP SEQUENCE transfer_ids;
ALTER TABLE accounts ADD CONSTRAINT accounts_balance_check CHECK (balance >= 0);
DROP TABLE system_accounts;
