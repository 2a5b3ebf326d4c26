"""Medical data extraction: problems, medications, procedures, labs, vitals and allergies."""
