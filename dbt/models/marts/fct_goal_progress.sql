with

goals as (
    select * from {{ ref('stg_app__goals') }}
),

users as (
    select * from {{ ref('dim_users') }}
),

final as (
    select
        goals.goal_id,
        goals.user_id,
        users.income_band,
        users.user_segment,
        goals.goal_type,
        goals.goal_status,
        goals.goal_status = 'achieved' as is_achieved,
        goals.target_amount,
        goals.current_amount,
        least(greatest(goals.current_amount / goals.target_amount, 0), 1)::numeric(6, 4) as progress_share,
        goals.created_at,
        goals.target_date,
        greatest(goals.target_date - (goals.created_at at time zone 'UTC')::date, 1) as planned_days,
        greatest(
            least(current_date, goals.target_date) - (goals.created_at at time zone 'UTC')::date, 1
        ) as elapsed_days
    from goals
    left join users
        on goals.user_id = users.user_id
)

select
    *,
    least(
        (progress_share * planned_days / elapsed_days)::numeric(8, 4), 3
    ) as pace_ratio
from final
