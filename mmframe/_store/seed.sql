CREATE TABLE `strategy_currency` (
`id` int NOT NULL AUTO_INCREMENT,
`currency_id` int NOT NULL COMMENT '币种ID',
`index_symbol` varchar(50) NOT NULL COMMENT '跟随外部币种符号',
`index_source` tinyint NOT NULL DEFAULT '0' COMMENT '0内部 1外部',
`market_status` tinyint NOT NULL DEFAULT '0' COMMENT '是否启用内部做市',
`market_type` tinyint NOT NULL COMMENT '市场类型:1现货 2杠杆',
`default_strategy` int NOT NULL COMMENT '默认应用策略id',
PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE `strategy_strategy` (
`id` int NOT NULL AUTO_INCREMENT,
`strategy_name` varchar(100) NOT NULL COMMENT '策略名称',
`config` json NOT NULL COMMENT '策略配置参数',
`desc` text COMMENT '策略介绍',
PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO strategy_strategy (strategy_name, config, `desc`) VALUES (
'external_index_follow',
'{
"price_change_amount": 1.0,
"tick_size": 0.1,
"base_quantity": 10,
"price_follow_percent": 100.0,
"base_precision": 2,
"quote_precision": 4,
"max_active_orders": 100,
"maintenance_interval": "1s",
"depth_levels": [
{"spread_percent": 0.0001, "quantity_ratio": 1.0},
{"spread_percent": 0.0002, "quantity_ratio": 0.95},
{"spread_percent": 0.0005, "quantity_ratio": 0.9},
{"spread_percent": 0.001, "quantity_ratio": 0.85},
{"spread_percent": 0.015, "quantity_ratio": 0.75},
{"spread_percent": 0.02, "quantity_ratio": 0.65},
{"spread_percent": 0.025, "quantity_ratio": 0.55},
{"spread_percent": 0.03, "quantity_ratio": 0.45},
{"spread_percent": 0.035, "quantity_ratio": 0.35},
{"spread_percent": 0.04, "quantity_ratio": 0.25}
]
}',
'外部指数跟随策略'
);
INSERT INTO strategy_currency (currency_id, index_symbol, index_source, market_status, market_type, default_strategy) VALUES
(879, 'BTCUSDT', 1, 1, 1, 1), -- BTC/USDT 现货
(880, 'ETHUSDT', 1, 1, 1, 1); -- ETH/USDT 现货
