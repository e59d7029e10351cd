-- Airflow's and MLflow's metadata live in their own databases on the platform's server.
create database fincoach_airflow owner fincoach;
create database fincoach_mlflow owner fincoach;
