//! Parameters, initialisation, layers and networks.
