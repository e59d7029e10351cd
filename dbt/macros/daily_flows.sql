{#
    Money flows per user and UTC day of the fct_transactions rows in `transactions` (a relation or a CTE):
    the one definition behind int_transactions__daily_flows and the incremental run of
    fct_daily_user_financials, which aggregates only the changed users' rows (read first, through the
    user_id, date_day index) instead of asking the view for them (Postgres cannot push a join into a
    grouped view, and aggregates every user's history).
#}
{% macro daily_flows(transactions) -%}
with

classified as (
    select
        user_id,
        date_day,
        amount,
        category,
        is_impulse,
        account_type,
        updated_at,
        category_group = 'essential' as is_essential,
        category_group = 'discretionary' as is_discretionary
    from {{ transactions }}
),

daily as (
    select
        user_id,
        date_day,
        count(*) as transactions_count,
        sum(case when category = 'income' then amount else 0 end) as income,
        sum(case when is_essential then -amount else 0 end) as spend_essential,
        sum(case when is_discretionary then -amount else 0 end) as spend_discretionary,
        sum(case when category = 'dining' then -amount else 0 end) as spend_dining,
        sum(case when category = 'shopping' then -amount else 0 end) as spend_shopping,
        sum(
            case when is_impulse and (is_essential or is_discretionary) then -amount else 0 end
        ) as impulse_spend,
        sum(
            case when category = 'savings_transfer' and account_type = 'savings' then amount else 0 end
        ) as savings_transfers,
        sum(case when category = 'debt_payment' and amount < 0 then -amount else 0 end) as debt_payments,
        sum(amount) as net_flow,
        sum(case when account_type = 'checking' then amount else 0 end) as checking_flow,
        sum(case when account_type = 'savings' then amount else 0 end) as savings_flow,
        max(updated_at) as updated_at
    from classified
    group by
        user_id,
        date_day
),

final as (
    select
        user_id,
        date_day,
        transactions_count,
        income,
        spend_essential,
        spend_discretionary,
        spend_essential + spend_discretionary as spend_total,
        spend_dining,
        spend_shopping,
        impulse_spend,
        savings_transfers,
        debt_payments,
        net_flow,
        checking_flow,
        savings_flow,
        updated_at
    from daily
)

select * from final
{%- endmacro %}
