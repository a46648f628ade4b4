-- One database per worker type: each worker runs its own transactional outbox relay, and a
-- relay publishes every unsent row of its database, so the discovery and manager workers
-- (different RabbitMQ users, different publish permissions) must not share one.
-- Runs once, when the postgres volume is first initialised.
CREATE DATABASE govbus_discovery OWNER govbus;
-- the second discovery replica (`discovery-b`) keeps its own copy of the registry
CREATE DATABASE govbus_discovery_b OWNER govbus;
CREATE DATABASE govbus_manager OWNER govbus;
