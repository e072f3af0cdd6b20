DROP TABLE payments;
DROP TABLE accounts;
DROP TABLE users;
DROP SEQUENCE user_ids;
