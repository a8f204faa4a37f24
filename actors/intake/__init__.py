"""Taking orders in: the Producer, the sources it reads, and the sample orders it can generate."""
