"""Scripts the Glue backends ship to the lake (the PySpark ETL job)."""
