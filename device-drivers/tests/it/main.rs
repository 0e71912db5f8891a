mod ble;
