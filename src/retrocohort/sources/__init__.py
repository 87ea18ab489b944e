"""retrocohort.sources"""
