-- One database per service (ARCHITECTURE.md §1), created on the first start of the postgres
-- container (/docker-entrypoint-initdb.d); each service's image migrates its own at start-up.
CREATE DATABASE tickets;
CREATE DATABASE agents;
CREATE DATABASE sla;
CREATE DATABASE scoring;
CREATE DATABASE ai_proxy;
